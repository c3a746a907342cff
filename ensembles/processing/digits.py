"""8x8 digit images (scikit-learn digits scale, 0..16) to the CNN's input, and logits to labels."""

from __future__ import annotations

import numpy as np

from ensembles.processing.classes import softmax_argmax
from ensembles.processing.errors import InvalidInput

PIXEL_MAX = 16.0
LABELS = tuple(str(d) for d in range(10))


def preprocess(images: np.ndarray) -> np.ndarray:
    """[n, 8, 8] pixels in 0..16 to float32 [n, 1, 8, 8] in 0..1."""
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise InvalidInput(f"IMAGE must be [n, 8, 8], got {list(images.shape)}", "bad_shape")
    if images.dtype != np.float32:
        raise InvalidInput(f"IMAGE must be FP32 pixels in 0..16, got {images.dtype}", "bad_dtype")
    if not np.isfinite(images).all():
        raise InvalidInput("IMAGE contains NaN or Inf", "not_finite")
    low, high = float(images.min(initial=0)), float(images.max(initial=0))
    if low < 0 or high > PIXEL_MAX:
        raise InvalidInput(f"IMAGE pixels must be in 0..16 (scikit-learn digits scale), "
                           f"got {low:g}..{high:g}; scale 0..255 images by 16/255", "out_of_range")
    return (images / np.float32(PIXEL_MAX))[:, None, :, :]


def postprocess(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits [n, 10] to labels int64 [n, 1] and softmax probabilities float32 [n, 10]."""
    return softmax_argmax(logits)
