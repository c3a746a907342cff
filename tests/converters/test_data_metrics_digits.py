"""demo.data, converters.metrics and the digits CNN source, without Triton."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tritonstack.converters.metrics import classification_agreement, embedding_agreement
from tritonstack.converters.sources import digits
from tritonstack.converters.sources.digits import (
    CACHE_ENV,
    DigitsCNN,
    TrainConfig,
    digits_accuracy,
    factory,
    predict_logits,
    train_digits_cnn,
    weights_path,
)
from tritonstack.demo import data
from tritonstack.demo.data import digits_split, sentences, text_corpus

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- text corpus

def test_corpus_sizes_and_disjoint() -> None:
    corpus = text_corpus()
    assert len(corpus.calibration) == data.CALIBRATION_SIZE == 512
    assert len(corpus.evaluation) == data.EVALUATION_SIZE == 1000
    assert len(set(corpus.calibration)) == 512
    assert len(set(corpus.evaluation)) == 1000
    assert not set(corpus.calibration) & set(corpus.evaluation)
    assert all(isinstance(s, str) for s in corpus.calibration + corpus.evaluation)


def test_corpus_is_deterministic_across_processes() -> None:
    # A fresh interpreter with a different hash seed (set iteration order) gives the same corpus.
    code = ("import hashlib, json; from tritonstack.demo.data import text_corpus; c = text_corpus(); "
            "print(hashlib.sha256(json.dumps([c.calibration, c.evaluation]).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip()
    c = text_corpus()
    here = hashlib.sha256(json.dumps([c.calibration, c.evaluation]).encode()).hexdigest()
    assert out == here


def test_corpus_calls_return_fresh_lists() -> None:
    first = text_corpus()
    first.calibration.clear()
    assert len(text_corpus().calibration) == 512
    assert text_corpus() == text_corpus()


def test_sentences_sorted_and_unique() -> None:
    pool = sentences()
    assert list(pool) == sorted(set(pool))
    assert len(pool) >= 1512


@pytest.mark.parametrize("part", ["calibration", "evaluation"])
def test_corpus_has_a_natural_length_spread(part: str) -> None:
    words = np.array([len(s.split()) for s in getattr(text_corpus(), part)])
    assert words.min() >= 4 and words.max() <= 60
    assert 7 <= np.median(words) <= 20
    assert (words <= 6).mean() >= 0.05  # short sentences
    assert (words >= 20).mean() >= 0.05  # long ones
    assert words.max() >= 35
    assert len(np.unique(words)) >= 25


def test_corpus_holds_prose_not_code() -> None:
    corpus = text_corpus()
    for s in corpus.calibration + corpus.evaluation:
        assert s[0].isupper() and s[-1] in ".?!", s
        for fragment in (">>>", "_", "()", "=", "{", "`", "->", "::", "\n"):
            assert fragment not in s, (fragment, s)
    # Real English: the commonest words of the language dominate.
    tokens = " ".join(corpus.evaluation).lower().split()
    assert sum(t in {"the", "a", "of", "to", "is", "and", "in"} for t in tokens) / len(tokens) > 0.1


def test_sentence_splitting_drops_code_blocks_and_keeps_abbreviations() -> None:
    doc = """Summary line here.

    Return the thing, e.g. a list of values. Second sentence follows here.

        >>> f(x_y)
        3

    Calls func_name() with x = 1.
    """
    split = [s for s in data._split_sentences(doc) if data._is_prose(s)]
    assert split == ["Return the thing, e.g. a list of values.", "Second sentence follows here."]


# --------------------------------------------------------------------------- digits split

def test_digits_split_shapes_dtypes_ranges() -> None:
    s = digits_split()
    sizes = {"train": len(s.y_train), "calib": len(s.y_calib), "test": len(s.y_test)}
    assert sizes == {"train": 1078, "calib": 270, "test": 449}  # 60 / 15 / 25 % of 1797
    for x, y in ((s.x_train, s.y_train), (s.x_calib, s.y_calib), (s.x_test, s.y_test)):
        assert x.dtype == np.float32 and x.shape == (len(y), 1, 8, 8)
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
        assert x.min() == 0.0 and x.max() == 1.0
    assert s.x_test_raw.dtype == np.float32 and s.x_test_raw.shape == (449, 8, 8)
    assert s.x_test_raw.max() == 16.0
    np.testing.assert_array_equal(s.x_test, (s.x_test_raw / np.float32(16))[:, None])
    assert not s.x_train.flags.writeable and not s.y_test.flags.writeable


def test_digits_split_is_stratified() -> None:
    s = digits_split()
    total = np.bincount(np.concatenate([s.y_train, s.y_calib, s.y_test]), minlength=10)
    for y, fraction in ((s.y_train, 0.6), (s.y_calib, 0.15), (s.y_test, 0.25)):
        counts = np.bincount(y, minlength=10)
        assert np.abs(counts - fraction * total).max() <= 1.5, (counts, fraction * total)


def test_digits_split_partitions_the_dataset_deterministically() -> None:
    from sklearn.datasets import load_digits

    s = digits_split()
    rows = np.concatenate([s.x_train, s.x_calib, s.x_test]).reshape(-1, 64) * 16
    everything = load_digits().data
    # Same multiset of images: sorted rows equal.
    np.testing.assert_array_equal(np.unique(rows, axis=0), np.unique(everything, axis=0))
    assert len(rows) == len(everything)
    other = digits_split.__wrapped__(0)
    np.testing.assert_array_equal(other.x_test, s.x_test)
    assert not np.array_equal(digits_split(1).y_test, s.y_test)


# --------------------------------------------------------------------------- embedding metrics

def _brute_force_recall(ref: np.ndarray, cand: np.ndarray, k: int = 10) -> float:
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def nearest(e: np.ndarray, i: int) -> set[int]:
        sims = [(float(e[i] @ e[j]), j) for j in range(len(e)) if j != i]
        return {j for _, j in sorted(sims, key=lambda t: -t[0])[:k]}

    r, c = unit(ref), unit(cand)
    return float(np.mean([len(nearest(r, i) & nearest(c, i)) / k for i in range(len(r))]))


def test_identical_embeddings_agree_perfectly() -> None:
    ref = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    # Scaling rows by positive factors changes no cosine.
    scaled = ref * np.linspace(0.5, 3, 50, dtype=np.float32)[:, None]
    for cand in (ref.copy(), scaled):
        m = embedding_agreement(ref, cand)
        assert m.mean_cosine == pytest.approx(1.0) and m.min_cosine == pytest.approx(1.0)
        assert m.recall_at_10 == 1.0 and m.spearman == pytest.approx(1.0)
        assert m.n == 50 and m.k == 10


def test_row_cosines_by_hand() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cand = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    m = embedding_agreement(ref, cand)
    assert m.mean_cosine == pytest.approx((1 + math.sqrt(0.5) - 1) / 3)
    assert m.min_cosine == pytest.approx(-1.0)
    assert m.k == 2 and m.recall_at_10 == 1.0  # with n = 3 every other row is a neighbour


def test_known_spearman() -> None:
    # Unit vectors at these angles give pair angles (0,1)=10, (0,2)=60, (1,2)=50 degrees for
    # the reference and 60, 70, 10 for the candidate: cosine ranks [3,1,2] vs [2,1,3],
    # sum d^2 = 2, rho = 1 - 6*2 / (3*(9-1)) = 0.5.
    def at(*degrees: float) -> np.ndarray:
        r = np.radians(degrees)
        return np.stack([np.cos(r), np.sin(r)], axis=1)

    m = embedding_agreement(at(0, 10, 60), at(0, 60, 70))
    assert m.spearman == pytest.approx(0.5)


def test_spearman_matches_scipy_over_upper_triangle() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 8))
    cand = ref + rng.normal(scale=0.8, size=ref.shape)
    m = embedding_agreement(ref, cand)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    c = cand / np.linalg.norm(cand, axis=1, keepdims=True)
    iu = np.triu_indices(40, k=1)
    expected = spearmanr((r @ r.T)[iu], (c @ c.T)[iu]).statistic
    assert m.spearman == pytest.approx(expected)
    assert 0.3 < m.spearman < 0.95


def test_recall_matches_brute_force_and_drops_with_noise_and_permutation() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(120, 32))
    small = ref + rng.normal(scale=0.2, size=ref.shape)
    large = ref + rng.normal(scale=1.0, size=ref.shape)
    permuted = ref[rng.permutation(120)]
    m_small, m_large, m_perm = (embedding_agreement(ref, c) for c in (small, large, permuted))
    for cand, m in ((small, m_small), (large, m_large), (permuted, m_perm)):
        assert m.recall_at_10 == pytest.approx(_brute_force_recall(ref, cand))
    assert 1.0 > m_small.recall_at_10 > m_large.recall_at_10 > m_perm.recall_at_10
    assert m_perm.recall_at_10 < 0.25  # chance level is 10/119
    assert m_small.mean_cosine > m_large.mean_cosine > m_perm.mean_cosine
    assert m_small.spearman > m_large.spearman > m_perm.spearman


def test_embedding_agreement_to_dict_is_json_ready() -> None:
    m = embedding_agreement(np.eye(4) + 0.1, np.eye(4) + 0.2)
    d = m.to_dict()
    assert set(d) == {"n", "mean_cosine", "min_cosine", "recall_at_10", "spearman", "k"}
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize("ref, cand, message", [
    (np.ones((5, 4)), np.ones((5, 3)), r"reference \(5, 4\) and candidate \(5, 3\)"),
    (np.ones((5, 4)), np.ones((6, 4)), r"reference \(5, 4\) and candidate \(6, 4\)"),
    (np.ones(4), np.ones(4), r"2-D .*reference \(4,\)"),
    (np.ones((2, 4)), np.ones((2, 4)), "at least 3 rows"),
    (np.eye(4), np.vstack([np.eye(4)[:3], np.zeros(4)]), "candidate row 3 is the zero vector"),
    (np.eye(4), np.where(np.eye(4) == 1, np.nan, 0), "candidate row 0 holds NaN"),
])
def test_embedding_agreement_rejects_bad_input(ref: np.ndarray, cand: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        embedding_agreement(ref, cand)


def test_constant_similarities_give_nan_spearman() -> None:
    m = embedding_agreement(np.ones((4, 3)), np.eye(4, 3) + np.eye(4, 3, k=-1))
    assert math.isnan(m.spearman)


# --------------------------------------------------------------------------- classification metrics

def test_classification_numbers_by_hand() -> None:
    labels = np.array([0, 1, 2, 0])
    ref = np.eye(3)[[0, 1, 2, 1]] * 5  # 3 of 4 right
    cand = np.eye(3)[[0, 1, 0, 1]] * 5 - 1  # 2 of 4 right; differs from ref on row 2
    m = classification_agreement(ref, cand, labels)
    assert m.n == 4
    assert m.reference_accuracy == 0.75 and m.candidate_accuracy == 0.5
    assert m.delta_points == pytest.approx(-25.0)
    assert m.agreement == 0.75
    assert m.to_dict() == {"n": 4, "reference_accuracy": 0.75, "candidate_accuracy": 0.5,
                           "delta_points": pytest.approx(-25.0), "agreement": 0.75}
    better = classification_agreement(cand, ref, labels)
    assert better.delta_points == pytest.approx(25.0) and better.agreement == 0.75


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 2]), r"labels must have shape \(4,\) to match logits \(4, 3\), got \(3,\)"),
    (np.array([0, 1, 3, 0]), r"0\.\.2 for 3 classes, got 0\.\.3"),
    (np.array([0.0, 1.0, 2.0, 0.0]), "labels must be integers"),
])
def test_classification_rejects_bad_labels(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classification_agreement(np.zeros((4, 3)), np.zeros((4, 3)), labels)


def test_classification_rejects_mismatched_logits() -> None:
    with pytest.raises(ValueError, match=r"reference \(4, 3\) and candidate \(4, 10\)"):
        classification_agreement(np.zeros((4, 3)), np.zeros((4, 10)), np.zeros(4, dtype=int))


# --------------------------------------------------------------------------- digits CNN

@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digits_cache")


@pytest.fixture(scope="module")
def trained(weights_dir: Path) -> DigitsCNN:
    """Trained from scratch into an empty cache folder (a few seconds)."""
    assert not any(weights_dir.iterdir())
    return train_digits_cnn(seed=0, directory=weights_dir)


def test_cnn_trains_to_high_test_accuracy(trained: DigitsCNN) -> None:
    assert not trained.training
    assert digits_accuracy(trained) >= 0.95


def test_cnn_io_contract(trained: DigitsCNN) -> None:
    for batch in (1, 5):
        logits = predict_logits(trained, np.zeros((batch, 1, 8, 8), np.float32))
        assert logits.shape == (batch, 10) and logits.dtype == np.float32


def test_training_is_deterministic_and_leaves_global_rng_alone(trained: DigitsCNN) -> None:
    state = torch.get_rng_state()
    again = train_digits_cnn(seed=0, use_cache=False)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(trained.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_second_call_uses_the_cache(trained: DigitsCNN, weights_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = weights_path(0, directory=weights_dir)
    assert path.is_file() and list(weights_dir.iterdir()) == [path]

    def no_training(*args: object) -> None:
        raise AssertionError("trained again although the weights were cached")

    monkeypatch.setattr(digits, "_fit", no_training)
    cached = train_digits_cnn(seed=0, directory=weights_dir)
    for a, b in zip(trained.state_dict().values(), cached.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cache_key_tracks_seed_and_hyperparameters(weights_dir: Path) -> None:
    base = weights_path(0, directory=weights_dir)
    assert base.name.startswith("digits_cnn-") and base.suffix == ".pt"
    others = {weights_path(1, directory=weights_dir),
              weights_path(0, TrainConfig(epochs=5), directory=weights_dir),
              weights_path(0, dataclasses.replace(TrainConfig(), learning_rate=1e-3), directory=weights_dir),
              weights_path(0, split_seed=1, directory=weights_dir)}
    assert base not in others and len(others) == 4


def test_corrupt_cache_is_retrained_and_replaced(tmp_path: Path) -> None:
    path = weights_path(0, TrainConfig(epochs=1), directory=tmp_path)
    path.write_bytes(b"not a checkpoint")
    model = train_digits_cnn(seed=0, epochs=1, directory=tmp_path)
    reloaded = digits._load(path)
    assert reloaded is not None
    assert torch.equal(reloaded.classifier[-1].weight, model.classifier[-1].weight)


def test_cache_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert digits.cache_dir() == tmp_path
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert digits.cache_dir() == tmp_path / "xdg" / "triton-serving-stack"


def test_factory_spec_and_data_hooks(trained: DigitsCNN, weights_dir: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(weights_dir))  # reuse the fixture's weights
    model, spec = factory()
    # the served graph: raw 0..16 pixels in; logits first (the gates read it), then the head
    assert spec.input_names == ("image",) and spec.output_names == ("logits", "probabilities", "label")
    assert spec.inputs[0].shape == ("batch", 8, 8) and spec.inputs[0].dtype == "float32"
    assert spec.inputs[0].valid_range == (0.0, 16.0)
    assert spec.task == "image-classification"
    assert spec.dynamic_axes() == {"image": {0: "batch"}, "logits": {0: "batch"},
                                   "probabilities": {0: "batch"}, "label": {0: "batch"}}
    assert spec.calibration_data is not None and spec.evaluation_data is not None
    calib = spec.calibration_data()
    assert set(calib) == {"image"} and calib["image"].shape == (270, 8, 8) and calib["image"].max() == 16
    inputs, labels = spec.evaluation_data()
    assert inputs["image"].shape == (449, 8, 8) and labels is not None and labels.shape == (449,)
    np.testing.assert_array_equal(inputs["image"], digits_split().x_test_raw)
    with torch.inference_mode():
        logits, probabilities, label = (t.numpy() for t in model(torch.from_numpy(inputs["image"])))
    np.testing.assert_array_equal(logits, predict_logits(model.cnn, digits_split().x_test))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    assert label.shape == (449, 1) and (label[:, 0] == logits.argmax(axis=1)).all()
    assert np.mean(label[:, 0] == labels) >= 0.95
    example = spec.example_inputs(batch=3)["image"]
    assert example.shape == (3, 8, 8) and example.min() >= 0 and example.max() <= 16


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cnn_exports_to_onnx_with_dynamic_batch(trained: DigitsCNN, tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tmp_path / "digits.onnx"
    torch.onnx.export(trained, (torch.zeros(2, 1, 8, 8),), str(path), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.array(digits_split().x_test[:37])
    np.testing.assert_allclose(session.run(["logits"], {"image": x})[0], predict_logits(trained, x),
                               rtol=1e-4, atol=1e-4)
