"""Load digit images for the CLI: a PNG (any size) or a .npy, as 8x8 pixels on the 0..16 scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonstack.client._errors import ClientError, Status


def load_digit(path: Path) -> np.ndarray:
    """[n, 8, 8] float32 in 0..16 from ``path``.

    A PNG is turned grey, shrunk to 8x8 by area averaging (how scikit-learn's digits were
    made), inverted when the background is light (digits are bright ink on dark), and scaled to
    0..16. A .npy must already hold [8, 8], [n, 8, 8] or [n, 64] on the 0..16 scale.
    """
    path = Path(path)
    if not path.is_file():
        raise _bad(f"image {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise _bad(f"{path} is not a numeric .npy array: {exc}") from None
        if array.dtype.kind not in "biuf":
            raise _bad(f"{path} holds {array.dtype} values; digit images are numbers on the 0..16 scale")
        array = np.asarray(array, dtype=np.float32)
        if array.shape == (8, 8):
            return array[None]
        if array.ndim == 3 and array.shape[1:] == (8, 8) and len(array):
            return array
        if array.ndim == 2 and array.shape[1] == 64 and len(array):
            return array.reshape(-1, 8, 8)
        raise _bad(f"{path} holds an array of shape {list(array.shape)}; digit images are [8, 8], "
                   "[n, 8, 8] or [n, 64] on the 0..16 scale")
    if suffix == ".png":
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:  # not in the client extra: a service sends arrays, not files
            raise _bad(f"{path}: reading PNGs needs Pillow (pip install pillow), or send a .npy "
                       "[8,8] array on the 0..16 scale") from None

        try:
            with Image.open(path) as image:
                grey = image.convert("L").resize((8, 8), Image.Resampling.BOX)
        except (UnidentifiedImageError, OSError) as exc:
            raise _bad(f"{path} is not a readable PNG: {exc}") from None
        pixels = np.asarray(grey, dtype=np.float32)
        if pixels.mean() > 127.5:
            pixels = 255.0 - pixels
        return (pixels * (16.0 / 255.0))[None]
    raise _bad(f"{path}: expected a .png or .npy image, got '{suffix or 'no extension'}'")


def _bad(message: str) -> ClientError:
    return ClientError(Status.INVALID_ARGUMENT, message, origin="client")
