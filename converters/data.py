"""Real, offline, deterministic data for calibrating and evaluating the demo models.

* :func:`text_corpus` - English sentences taken from the docstrings of a fixed list of Python
  standard-library modules (no download, no model hub), split into a calibration set and a
  disjoint evaluation set. Used for MiniLM INT8 calibration and the embedding-agreement gate.
* :func:`digits_split` - scikit-learn's bundled ``load_digits`` (1,797 labelled 8x8 images),
  stratified into train / calib / test with a fixed seed. Used to train the digits CNN,
  calibrate it, and gate its INT8 accuracy.

Both are cached in-process and return read-only arrays/tuples, so callers can share them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import random
import re
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CORPUS_MODULES",
    "CORPUS_SEED",
    "DigitsSplit",
    "TextCorpus",
    "digits_split",
    "sentences",
    "text_corpus",
]

#: Standard-library modules whose docstrings make the corpus. Only modules present in every
#: CPython build, with the same docstrings on every OS (no os/socket/subprocess, whose members
#: differ by platform; no decimal/zoneinfo/datetime, whose C and pure-Python twins differ).
CORPUS_MODULES: tuple[str, ...] = (
    "abc", "argparse", "ast", "asyncio", "base64", "bdb", "binascii", "bisect", "builtins",
    "calendar", "cmd", "code", "codecs", "collections", "colorsys", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "difflib", "dis", "email.message",
    "email.utils", "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools",
    "getopt", "gettext", "glob", "gzip", "heapq", "hmac", "html", "html.parser", "http.client",
    "http.cookiejar", "http.server", "imaplib", "inspect", "io", "ipaddress", "itertools", "json",
    "keyword", "linecache", "logging", "logging.handlers", "mailbox", "math", "mimetypes",
    "multiprocessing", "numbers", "operator", "optparse", "pathlib", "pdb", "pickle", "pkgutil",
    "plistlib", "poplib", "pprint", "profile", "pstats", "queue", "quopri", "random", "re",
    "reprlib", "sched", "secrets", "shelve", "shlex", "shutil", "smtplib", "socketserver",
    "statistics", "string", "struct", "sys", "tabnanny", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing", "unittest",
    "unittest.mock", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref",
    "xml.dom.minidom", "xml.etree.ElementTree", "xmlrpc.client", "zipfile", "zipimport",
)
CORPUS_SEED = 0
CALIBRATION_SIZE = 512
EVALUATION_SIZE = 1000
MIN_WORDS, MAX_WORDS = 4, 60

# Abbreviations whose full stop must not end a sentence.
_ABBREVIATIONS = {"e.g.": "e\x00g\x00", "i.e.": "i\x00e\x00", "etc.": "etc\x00", "vs.": "vs\x00",
                  "cf.": "cf\x00"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Anything that looks like code: identifiers with underscores, operators, brackets, calls,
# dotted names, reST markup, command-line flags.
_CODE = re.compile(r"[_=<>{}\[\]\\`|#@$~^*%]|\(\)|::|->|\w\.\w|\w\(|--|\s-\w|\.\.\.")


@dataclass(frozen=True)
class TextCorpus:
    """Two disjoint lists of English sentences.

    Attributes:
        calibration: ``CALIBRATION_SIZE`` (512) sentences for INT8 calibration.
        evaluation: ``EVALUATION_SIZE`` (1000) held-out sentences for the agreement gate.
    """

    calibration: list[str]
    evaluation: list[str]


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn digits, stratified into train / calib / test (60 / 15 / 25 %).

    ``x_*`` are float32 ``[n, 1, 8, 8]`` scaled to 0..1 (raw / 16), the CNN's input; ``y_*`` are
    int64 ``[n]`` labels 0..9. ``x_test_raw`` is float32 ``[n, 8, 8]`` on the raw 0..16 scale,
    what the served ``classify_digit`` pipeline takes. All arrays are read-only.
    """

    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_test_raw: np.ndarray


def _docstrings(module_name: str) -> list[str]:
    """The module's docstring and those of its own classes, functions, methods and properties."""
    module = importlib.import_module(module_name)
    docs: list[object] = [module.__doc__]
    for _, obj in sorted(vars(module).items()):
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue  # re-exported from elsewhere: counted (once) where it is defined
        docs.append(obj.__doc__)
        if inspect.isclass(obj):
            for _, member in sorted(vars(obj).items()):
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if inspect.isroutine(member) or isinstance(member, property):
                    docs.append(member.__doc__)
    return [d for d in docs if isinstance(d, str)]


def _split_sentences(doc: str) -> list[str]:
    """Prose paragraphs of a docstring, split into sentences; indented/doctest blocks dropped."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        lines = paragraph.splitlines()
        if any(line.startswith((" ", "\t", ">>>", "...")) for line in lines):
            continue  # code example, argument table or literal block
        text = " ".join(line.strip() for line in lines)
        for abbreviation, placeholder in _ABBREVIATIONS.items():
            text = text.replace(abbreviation, placeholder)
        for sentence in _SENTENCE_END.split(text):
            for abbreviation, placeholder in _ABBREVIATIONS.items():
                sentence = sentence.replace(placeholder, abbreviation)
            out.append(sentence.strip())
    return out


def _is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not sentence[0].isupper() or not sentence.endswith((".", "?", "!")):
        return False
    if _CODE.search(sentence):
        return False
    if sum(c.isalpha() or c.isspace() for c in sentence) < 0.9 * len(sentence):
        return False
    # CamelCase words are class names (ZipFile, OrderedDict); all-caps acronyms are fine.
    return not any(sum(c.isupper() for c in w) > 1 and not w.isupper() for w in words)


@functools.cache
def sentences() -> tuple[str, ...]:
    """Every distinct prose sentence from :data:`CORPUS_MODULES`' docstrings, sorted.

    Raises:
        RuntimeError: Fewer sentences than the corpus needs (Python run with ``-OO``, which
            strips docstrings).
    """
    found: set[str] = set()
    with warnings.catch_warnings():
        # Touching deprecated aliases (typing.io, ...) warns; we only read their docstrings.
        warnings.simplefilter("ignore")
        for module_name in CORPUS_MODULES:
            for doc in _docstrings(module_name):
                found.update(s for s in _split_sentences(doc) if _is_prose(s))
    needed = CALIBRATION_SIZE + EVALUATION_SIZE
    if len(found) < needed:
        raise RuntimeError(
            f"found only {len(found)} docstring sentences, the corpus needs {needed}; "
            "run Python without -OO (it strips docstrings)"
        )
    return tuple(sorted(found))


@functools.cache
def _shuffled() -> tuple[str, ...]:
    pool = list(sentences())
    random.Random(CORPUS_SEED).shuffle(pool)
    return tuple(pool[:CALIBRATION_SIZE + EVALUATION_SIZE])


def text_corpus() -> TextCorpus:
    """512 calibration and 1000 evaluation sentences, disjoint and deterministic.

    The sorted :func:`sentences` are shuffled with ``random.Random(CORPUS_SEED)``, so the same
    Python version gives the same corpus on every run and machine. The walk over the docstrings
    is cached in-process; each call returns fresh lists, so a caller mutating them cannot
    change what the next caller gets.
    """
    pool = _shuffled()
    return TextCorpus(calibration=list(pool[:CALIBRATION_SIZE]),
                      evaluation=list(pool[CALIBRATION_SIZE:]))


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@functools.cache
def digits_split(seed: int = 0) -> DigitsSplit:
    """scikit-learn's digits, stratified 60 / 15 / 25 % into train / calib / test.

    Args:
        seed: ``random_state`` of both stratified splits; the default 0 is what the demo uses.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)  # [1797, 8, 8], 0..16
    labels = digits.target.astype(np.int64)
    n = len(labels)
    n_test = round(0.25 * n)
    n_calib = round(0.15 * n)
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, labels, test_size=n_test, stratify=labels, random_state=seed)
    train_x, calib_x, train_y, calib_y = train_test_split(
        rest_x, rest_y, test_size=n_calib, stratify=rest_y, random_state=seed)

    def scaled(x: np.ndarray) -> np.ndarray:
        return _readonly((x / np.float32(16.0))[:, None, :, :].astype(np.float32))

    return DigitsSplit(
        seed=seed,
        x_train=scaled(train_x), y_train=_readonly(train_y),
        x_calib=scaled(calib_x), y_calib=_readonly(calib_y),
        x_test=scaled(test_x), y_test=_readonly(test_y),
        x_test_raw=_readonly(test_x),
    )
