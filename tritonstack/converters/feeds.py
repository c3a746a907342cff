"""Input batches for parity, calibration and the accuracy gate, per source kind.

* HF text models: parity on random token ids with padded masks (several shapes); calibration on
  the corpus' calibration sentences padded to ONE fixed length (ORT static calibration needs
  equal shapes); the gate on the held-out evaluation sentences, padded per batch.
* torch factories: parity on the spec's random examples (several batch sizes / lengths) plus
  real rows when the source has evaluation data; calibration and evaluation from the spec's hooks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tritonstack.converters.sources.hf import HFSource
from tritonstack.converters.sources.torch_module import TorchInputSpec

Feed = dict[str, np.ndarray]
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def hf_parity_cases(vocab_size: int, seed: int = 0, longest: int | None = None) -> list[Feed]:
    """Three shapes, none longer than the model takes (``longest``); masks padded at the tail for
    some rows (real batches look like that)."""
    rng = np.random.default_rng(seed)
    cases = []
    for batch, length in ((1, 7), (4, 16), (3, 41)):
        length = min(length, longest or length)
        ids = rng.integers(1000 if vocab_size > 2000 else 1, vocab_size, size=(batch, length))
        mask = np.ones((batch, length), np.int64)
        for row in range(1, batch):
            mask[row, length - row * (length // (batch + 1)):] = 0
        ids = np.where(mask == 1, ids, 0)
        cases.append({"input_ids": ids.astype(np.int64), "attention_mask": mask,
                      "token_type_ids": np.zeros((batch, length), np.int64)})
    return cases


def tokenize(source: HFSource, sentences: list[str], *, batch_size: int, fixed_length: int | None = None,
             max_length: int = 128, pairs: bool = False) -> list[Feed]:
    """Tokenized batches (int64); ``fixed_length`` pads/truncates every batch to that length.

    ``pairs``: sentence ``i`` is paired with sentence ``i + 1`` (query, passage), the input a
    cross-encoder scores.
    """
    tokenizer = source.tokenizer()
    feeds = []
    for i in range(0, len(sentences), batch_size):
        chunk = sentences[i:i + batch_size]
        second = ([sentences[(i + j + 1) % len(sentences)] for j in range(len(chunk))]
                  if pairs else None)
        if fixed_length:
            enc = tokenizer(chunk, second, padding="max_length", truncation=True,
                            max_length=fixed_length, return_tensors="np")
        else:
            enc = tokenizer(chunk, second, padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in TEXT_INPUTS}
        feed.setdefault("token_type_ids", np.zeros_like(feed["input_ids"]))
        feeds.append(feed)
    return feeds


def text_calibration(source: HFSource, size: int | None, fixed_length: int = 64,
                     pairs: bool = False, longest: int | None = None) -> list[Feed]:
    from tritonstack.demo.data import text_corpus

    sentences = text_corpus().calibration[: size or 256]
    return tokenize(source, sentences, batch_size=16, fixed_length=min(fixed_length, longest or fixed_length),
                    pairs=pairs)


def text_evaluation(source: HFSource, size: int | None, pairs: bool = False,
                    longest: int | None = None) -> tuple[list[Feed], None]:
    """Held-out sentences, truncated where the model's positions end (``longest``) as the runner
    refuses longer ones: accuracy, golden data and the drift profile run on these."""
    from tritonstack.demo.data import text_corpus

    sentences = text_corpus().evaluation
    return tokenize(source, sentences[: size or len(sentences)], batch_size=64, pairs=pairs,
                    max_length=min(128, longest or 128)), None


def chunk(batch: Mapping[str, np.ndarray], rows: int, limit: int | None = None) -> list[Feed]:
    """Split a dict of equal-length arrays into feeds of ``rows`` rows (first ``limit`` rows)."""
    n = len(next(iter(batch.values())))
    n = min(n, limit) if limit else n
    return [{k: np.ascontiguousarray(v[i:min(i + rows, n)]) for k, v in batch.items()}
            for i in range(0, n, rows)]


def torch_parity_cases(spec: TorchInputSpec) -> list[Feed]:
    cases: list[Feed] = [spec.example_inputs(batch, dims={a: length for s in spec.inputs
                                                         for a in s.dynamic_axes.values()}, seed=batch)
                         for batch, length in ((1, 5), (4, 11), (7, 17))]
    if spec.evaluation_data is not None:
        real, _ = spec.evaluation_data()
        cases.append({k: np.asarray(v)[:16] for k, v in real.items()})
    return cases


def torch_calibration(spec: TorchInputSpec, mode: str, size: int | None) -> list[Feed]:
    """Calibration feeds from the spec's hook (``mode='source'``) or random examples."""
    if mode == "source" and spec.calibration_data is not None:
        return chunk({k: np.asarray(v) for k, v in spec.calibration_data().items()}, 32, size)
    return [spec.example_inputs(32, seed=100 + i) for i in range(max(1, (size or 128) // 32))]


def torch_evaluation(spec: TorchInputSpec, size: int | None) -> tuple[list[Feed], np.ndarray | None]:
    if spec.evaluation_data is None:
        raise ValueError("the source has no evaluation data")
    inputs, labels = spec.evaluation_data()
    feeds = chunk({k: np.asarray(v) for k, v in inputs.items()}, 256, size)
    if labels is not None:
        labels = np.asarray(labels)[: sum(len(next(iter(f.values()))) for f in feeds)]
    return feeds, labels
