"""How far the candidate's answer is from the primary's, row by row, per kind of output:

* ``embedding``: agreement = cosine similarity, distance = 1 - cosine;
* ``classification`` (logits): agreement = 1 when the top class is the same, distance = the total
  variation distance between the two softmax distributions (0 = same, 1 = disjoint);
* ``score`` (one logit, a cross-encoder): agreement = 1 when the scores are within 5 % (of 1 +
  |primary|), distance = |difference|.
"""

from __future__ import annotations

import numpy as np

KINDS = ("embedding", "classification", "score")
SCORE_TOLERANCE = 0.05


def kind_for(task: str, output_dims: tuple[int, ...]) -> str:
    """The kind of a model's output from its export's task and output shape."""
    if task in ("feature-extraction", "sentence-similarity"):
        return "embedding"
    if output_dims and output_dims[-1] == 1:
        return "score"
    return "classification"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def compare(kind: str, served: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(agreement, distance)`` per row of two float outputs [n, ...] of the same shape."""
    if served.shape != other.shape:
        n = served.shape[0] if served.ndim else 1
        return np.zeros(n), np.ones(n)  # a different shape is a different answer
    a = served.reshape(served.shape[0], -1).astype(np.float64)
    b = other.reshape(other.shape[0], -1).astype(np.float64)
    if kind == "embedding":
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 0.0)
        cosine = np.clip(cosine, -1.0, 1.0)
        return cosine, 1.0 - cosine
    if kind == "classification":
        same = (a.argmax(axis=1) == b.argmax(axis=1)).astype(np.float64)
        return same, 0.5 * np.abs(_softmax(a) - _softmax(b)).sum(axis=1)
    if kind == "score":
        diff = np.abs(a[:, 0] - b[:, 0])
        return (diff <= SCORE_TOLERANCE * (1 + np.abs(a[:, 0]))).astype(np.float64), diff
    raise ValueError(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
