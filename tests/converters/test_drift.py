"""The drift measure the export's profile step and the python-ort runner share
(tritonstack/serving/drift.py): features per row, the reference's bins, the sliding window's
bookkeeping, and PSI that stays low for the same distribution and rises for a shifted one."""

from __future__ import annotations

import numpy as np
import pytest

from tritonstack.serving.drift import DriftWindow, psi, reference_profile, row_features


def _images(rng: np.random.Generator, n: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {"image": (rng.random((n, 1, 8, 8)) * scale).astype(np.float32)}


def _profile(rng: np.random.Generator, window: int = 500) -> dict:
    feed, logits = _images(rng, 1000), rng.normal(size=(1000, 10)).astype(np.float32)
    return reference_profile(row_features(feed, logits, "classification"), kind="classification",
                             classes=10, window=window, min_rows=100)


def test_features_per_kind() -> None:
    ids = np.array([[101, 100, 7, 102, 0], [101, 8, 102, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    out = row_features({"input_ids": ids, "attention_mask": mask}, np.ones((2, 4)), "embedding",
                       unk_id=100, centroid=np.array([1.0, 1.0, 1.0, 1.0]))
    assert out["tokens"].tolist() == [4, 3] and out["unknown_rate"].tolist() == [0.25, 0.0]
    np.testing.assert_allclose(out["centroid_distance"], [0.0, 0.0], atol=1e-12)
    cls = row_features({}, np.array([[0.0, 3.0], [2.0, 0.0]]), "classification")
    assert cls["predicted_class"].tolist() == [1, 0] and (cls["confidence"] > 0.5).all()
    assert row_features({}, np.array([[0.5], [-1.0]]), "score")["score"].tolist() == [0.5, -1.0]


def test_a_reference_piled_on_one_value_still_tells_any_other_value_apart() -> None:
    """The reference text had no unknown tokens at all: live text with some must still score."""
    profile = reference_profile({"unknown_rate": np.zeros(500)}, kind="embedding", unk_id=100,
                                window=100, min_rows=10)
    mask = np.ones((50, 4), np.int64)
    clean = DriftWindow(profile)
    clean.observe({"input_ids": np.full((50, 4), 7), "attention_mask": mask}, np.ones((50, 2)))
    assert clean.scores() == {"unknown_rate": pytest.approx(0.0)}
    odd = DriftWindow(profile)
    odd.observe({"input_ids": np.array([[7, 100, 7, 7]] * 50), "attention_mask": mask}, np.ones((50, 2)))
    assert odd.scores()["unknown_rate"] > 0.25


def test_a_feature_the_batches_lack_gets_no_score() -> None:
    profile = reference_profile({"unknown_rate": np.zeros(500), "tokens": np.arange(500.0)},
                                kind="embedding", window=100, min_rows=10)  # no unk_id: not measured
    window = DriftWindow(profile)
    window.observe({"input_ids": np.full((50, 4), 7), "attention_mask": np.ones((50, 4))}, np.ones((50, 2)))
    assert set(window.scores()) == {"tokens"}


def test_same_distribution_scores_low_and_a_shift_scores_high() -> None:
    rng = np.random.default_rng(0)
    window = DriftWindow(_profile(rng))
    assert window.scores() == {}  # under min_rows: nothing to judge yet
    for _ in range(100):
        window.observe(_images(rng, 5), rng.normal(size=(5, 10)))
    same = window.scores()
    assert max(same.values()) < 0.1, same
    for _ in range(100):
        window.observe(_images(rng, 5, scale=0.3), rng.normal(size=(5, 10)))
    shifted = window.scores()
    assert shifted["image_mean"] > 1.0 and shifted["predicted_class"] < 0.1, shifted


@pytest.mark.parametrize("sizes", [[1] * 700, [7, 300, 2, 501, 1, 1, 600], [1200], [499, 1, 500, 1]])
def test_the_window_counts_exactly_its_last_rows(sizes) -> None:
    rng = np.random.default_rng(1)
    window = DriftWindow(_profile(rng))
    values = []
    for n in sizes:
        feed = _images(rng, n)
        window.observe(feed, rng.normal(size=(n, 10)))
        values.append(row_features(feed, np.zeros((n, 10)), "classification")["image_mean"])
    last = np.concatenate(values)[-window.window:]
    edges = window.edges["image_mean"]
    expected = np.bincount(np.searchsorted(edges, last, side="left"), minlength=len(edges) + 1)
    assert window.counts["image_mean"].tolist() == expected.tolist()
    assert window.rows == min(sum(sizes), window.window)


def test_psi_is_zero_for_identical_shares_and_grows_with_distance() -> None:
    reference = np.full(10, 0.1)
    assert psi(reference, reference) == pytest.approx(0.0)
    near, far = reference.copy(), np.zeros(10)
    near[0], near[1] = 0.12, 0.08
    far[0] = 1.0
    assert 0 < psi(near, reference) < 0.1 < 0.25 < psi(far, reference)
