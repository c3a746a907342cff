"""The pipelines' contracts: inputs built and outputs checked for the demo's ``embed`` and
``classify_digit``, and for the text pipelines ``python -m tritonstack.ensembles add`` writes (embeddings of
any width, text classification, reranking). Pure functions; the clients add the RPC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tritonstack.client._errors import ClientError, Status, invalid

EMBED_MODEL = "embed"
EMBED_DIM = 384
CLASSIFY_MODEL = "classify_digit"
DIGIT_SHAPE = (8, 8)
DIGIT_MAX = 16.0


class DigitPredictions(NamedTuple):
    """``classify_digits`` result: ``labels`` int64 [n], ``probabilities`` float32 [n, 10]."""

    labels: np.ndarray
    probabilities: np.ndarray


class TextPredictions(NamedTuple):
    """``classify_texts`` result: ``labels`` the class names [n], ``probabilities`` float32 [n, k]."""

    labels: list[str]
    probabilities: np.ndarray


def embed_inputs(texts: str | Sequence[str], model: str = EMBED_MODEL,
                 call: str = "embed") -> dict[str, np.ndarray]:
    """A text pipeline's request: TEXT as BYTES [n, 1] (one str is one text)."""
    return {"TEXT": _text_column(texts, model, call)}


def _text_column(texts: str | Sequence[str], model: str, call: str) -> np.ndarray:
    items = [texts] if isinstance(texts, str | bytes) else list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str | bytes):
            raise invalid(f"{call}() takes strings; item {i} is {type(text).__name__}", model)
    encoded = []
    for i, text in enumerate(items):
        try:
            encoded.append(text.encode("utf-8") if isinstance(text, str) else text)
        except UnicodeEncodeError:  # lone surrogates, e.g. from invalid UTF-8 on a command line
            raise invalid(f"text {i} is not valid Unicode (it holds lone surrogates, as undecodable "
                          "bytes become); pass UTF-8 text", model) from None
    array = np.empty((len(items), 1), dtype=object)
    array[:, 0] = encoded
    return array


def embed_output(outputs: dict[str, np.ndarray], n: int, model: str) -> np.ndarray:
    """EMBEDDING float32 [n, d]: the demo's MiniLM has d = 384, other encoders their own."""
    return _float_rows(outputs, "EMBEDDING", n, "d", model)


def rerank_inputs(query: str, texts: Sequence[str], model: str) -> dict[str, np.ndarray]:
    """A rerank pipeline's request: the query repeated beside each text, QUERY and TEXT [n, 1]."""
    if isinstance(texts, str | bytes):
        texts = [texts]
    column = _text_column(list(texts), model, "rerank")
    return {"QUERY": _text_column([query] * len(column), model, "rerank"), "TEXT": column}


def rerank_output(outputs: dict[str, np.ndarray], n: int, model: str) -> np.ndarray:
    return _checked(outputs, "SCORE", (n, 1), np.float32, model).reshape(n)


def text_class_outputs(outputs: dict[str, np.ndarray], n: int, model: str) -> TextPredictions:
    labels = _checked(outputs, "LABEL", (n, 1), np.object_, model).reshape(n)
    probabilities = _float_rows(outputs, "PROBABILITIES", n, "classes", model)
    names = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in labels]
    return TextPredictions(names, probabilities)


def digit_inputs(images: np.ndarray | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The ``classify_digit`` request: IMAGE float32 [n, 8, 8], pixel values 0..16."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise invalid(f"digit images must be numeric, got dtype {array.dtype}", CLASSIFY_MODEL)
    if array.shape == DIGIT_SHAPE:
        array = array[None]
    elif array.ndim == 2 and array.shape[1] == 64:
        array = array.reshape(-1, *DIGIT_SHAPE)
    if array.ndim != 3 or array.shape[1:] != DIGIT_SHAPE:
        raise invalid(f"digit images must be [n, 8, 8] (or [8, 8], or [n, 64]), got shape "
                      f"{array.shape}; downscale larger images to 8x8 first", CLASSIFY_MODEL)
    array = array.astype(np.float32, copy=False)
    if array.size and (array.min() < 0 or array.max() > DIGIT_MAX):
        raise invalid(f"digit pixels must be in 0..16 (scikit-learn digits scale), got "
                      f"{array.min():g}..{array.max():g}; for 0..255 images use x * 16 / 255",
                      CLASSIFY_MODEL)
    return {"IMAGE": array}


def digit_outputs(outputs: dict[str, np.ndarray], n: int, model: str) -> DigitPredictions:
    labels = _checked(outputs, "LABEL", (n, 1), np.int64, model).reshape(n)
    probabilities = _checked(outputs, "PROBABILITIES", (n, 10), np.float32, model)
    return DigitPredictions(labels, probabilities)


def _checked(outputs: dict[str, np.ndarray], name: str, shape: tuple[int, ...],
             dtype: type, model: str) -> np.ndarray:
    array = outputs.get(name)
    if array is None or array.shape != shape or array.dtype != dtype:
        raise _broken(model, name, f"{np.dtype(dtype)} {shape}", array)
    return array


def _float_rows(outputs: dict[str, np.ndarray], name: str, n: int, width: str, model: str) -> np.ndarray:
    """Output ``name`` as float32 [n, any width] (a model's own width: embedding size, classes)."""
    array = outputs.get(name)
    if array is None or array.ndim != 2 or len(array) != n or array.dtype != np.float32:
        raise _broken(model, name, f"float32 ({n}, {width})", array)
    return array


def _broken(model: str, name: str, expected: str, array: np.ndarray | None) -> ClientError:
    got = "nothing" if array is None else f"{array.dtype} {array.shape}"
    return ClientError(Status.INTERNAL, f"model '{model}' broke its contract: expected output "
                       f"{name} {expected}, got {got}", model=model)
