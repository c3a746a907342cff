"""Real, offline, deterministic data for calibrating and evaluating the demo models.

* :func:`text_corpus` - English sentences taken from the docstrings in the source files of a
  fixed list of Python standard-library modules (no download, no model hub), split into a
  calibration set and a disjoint evaluation set. Used for MiniLM INT8 calibration and the
  embedding-agreement gate.
* :func:`digits_split` - scikit-learn's bundled ``load_digits`` (1,797 labelled 8x8 images),
  stratified into train / calib / test with a fixed seed. Used to train the digits CNN,
  calibrate it, and gate its INT8 accuracy.

Both are cached in-process. ``digits_split`` returns read-only arrays; ``text_corpus`` returns
fresh lists on every call. Either way one caller cannot change what the next one gets.
"""

from __future__ import annotations

import ast
import functools
import inspect
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

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

#: Standard-library modules and packages (all their submodules) whose docstrings make the
#: corpus. Their *source files* are parsed, nothing is imported: the text cannot depend on the
#: OS, on C accelerators, or on what other libraries imported or patched at run time.
CORPUS_MODULES: tuple[str, ...] = (
    "abc", "argparse", "ast", "asyncio", "base64", "bdb", "bisect", "calendar", "cmd", "code",
    "codecs", "collections", "colorsys", "concurrent.futures", "configparser", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "dis", "email", "enum", "filecmp",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip",
    "heapq", "hmac", "html", "http", "imaplib", "inspect", "ipaddress", "json", "keyword",
    "linecache", "logging", "mailbox", "mimetypes", "multiprocessing", "numbers", "operator",
    "optparse", "pathlib", "pdb", "pickle", "pkgutil", "plistlib", "poplib", "pprint", "profile",
    "pstats", "queue", "quopri", "random", "re", "reprlib", "sched", "secrets", "shelve", "shlex",
    "shutil", "smtplib", "socketserver", "statistics", "string", "struct", "tabnanny", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "types",
    "typing", "unittest", "urllib", "uuid", "warnings", "wave", "weakref", "xml.dom", "xml.etree",
    "xmlrpc", "zipfile", "zipimport",
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


def _source_files(stdlib: Path) -> list[Path]:
    """The .py files of :data:`CORPUS_MODULES` (packages: every submodule, tests excluded)."""
    files: list[Path] = []
    for name in CORPUS_MODULES:
        base = stdlib.joinpath(*name.split("."))
        if base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
        elif base.is_dir():
            files.extend(p for p in sorted(base.rglob("*.py"))
                         if not {"test", "tests"} & set(p.relative_to(base).parts[:-1]))
        else:
            raise RuntimeError(
                f"standard-library source for {name!r} not found under {stdlib}; the text corpus "
                "needs the .py sources (some distributions ship them in a separate package)"
            )
    return files


def _docstrings(path: Path) -> list[str]:
    """Docstrings of the module and of every class and function defined in its source."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = (ast.get_docstring(node, clean=True) for node in ast.walk(tree) if isinstance(node, kinds))
    return [d for d in docs if d]


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


def _without_abbreviations(text: str) -> str:
    for abbreviation in _ABBREVIATIONS:
        text = text.replace(abbreviation, "")
    return text


def _is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not sentence[0].isupper() or not sentence.endswith((".", "?", "!")):
        return False
    if _CODE.search(_without_abbreviations(sentence)):
        return False
    if sum(c.isalpha() or c.isspace() for c in sentence) < 0.9 * len(sentence):
        return False
    # CamelCase words are class names (ZipFile, OrderedDict); all-caps acronyms are fine.
    return not any(sum(c.isupper() for c in w) > 1 and not w.isupper() for w in words)


@functools.cache
def sentences() -> tuple[str, ...]:
    """Every distinct prose sentence from :data:`CORPUS_MODULES`' docstrings, sorted.

    Raises:
        RuntimeError: The standard library's .py sources are missing, or hold fewer sentences
            than the corpus needs.
    """
    found: set[str] = set()
    for path in _source_files(Path(sysconfig.get_path("stdlib"))):
        for doc in _docstrings(path):
            found.update(s for s in _split_sentences(doc) if _is_prose(s))
    needed = CALIBRATION_SIZE + EVALUATION_SIZE
    if len(found) < needed:
        raise RuntimeError(
            f"found only {len(found)} docstring sentences in the standard library's sources, "
            f"the corpus needs {needed}"
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
