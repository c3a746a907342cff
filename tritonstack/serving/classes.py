"""Logits to classes: the softmax and argmax every classifier's post-processing shares."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInput


def softmax_argmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits [n, k] to class indices int64 [n, 1] and softmax probabilities float32 [n, k]."""
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise InvalidInput(f"logits must be [n, classes], got {list(logits.shape)}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    labels = probabilities.argmax(axis=1).astype(np.int64)[:, None]
    return labels, probabilities.astype(np.float32)


def label_names(indices: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Class indices [n, 1] to their names as Triton BYTES [n, 1]."""
    names = np.array([label.encode("utf-8") for label in labels], dtype=object)
    return names[indices.reshape(-1)].reshape(-1, 1)
