"""What the front reads from the model repository Triton serves: each pipeline's tokenizer, for
honest token counts, and its classifier's label names.

Triton tokenizes inside the pipeline and reports no counts, so the front counts with the same
``tokenizer.json`` and ``max_length`` the pipeline's tokenizing step was written with (the
python-ort runner's ``text_input`` front, or an ``ensembles add`` tokenizer step). Without a
repository, or for a pipeline whose tokenizer cannot be found, counts are unknown (None), and
the routes say so rather than guess.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class Counter:
    """Counts the tokens a pipeline's model sees, special tokens included."""

    tokenizer: Tokenizer
    max_length: int
    path: Path

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text before truncation (compare with ``max_length``)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]


def _config(folder: Path):  # type: ignore[no-untyped-def]
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    path = folder / "config.pbtxt"
    if not path.is_file():
        return None
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (text_format.ParseError, OSError, UnicodeDecodeError):
        return None


def _find(repository: Path, model: str, depth: int = 0) -> Counter | None:
    config = _config(repository / model)
    if config is None or depth > 4:
        return None
    params = {k: v.string_value for k, v in config.parameters.items()}
    if "max_length" in params:
        name = params.get("tokenizer_file") or "tokenizer.json"
        # beside config.pbtxt (a runner that tokenizes), else in the newest version (an `ensembles add` step)
        versions = sorted((v for v in (repository / model).iterdir() if v.name.isdigit()),
                          key=lambda v: int(v.name), reverse=True)
        path = next((f for f in (repository / model / name, *(v / name for v in versions)) if f.is_file()), None)
        if path is not None:
            tokenizer = Tokenizer.from_file(str(path))
            tokenizer.no_padding()
            tokenizer.no_truncation()
            return Counter(tokenizer, int(params["max_length"]), path)
    if config.platform == "ensemble":
        for step in config.ensemble_scheduling.step:
            found = _find(repository, step.model_name, depth + 1)
            if found is not None:
                return found
    return None


@functools.lru_cache(maxsize=64)
def counter(repository: Path | None, model: str) -> Counter | None:
    """The token counter of pipeline ``model`` in ``repository`` (None: not found)."""
    if repository is None:
        return None
    try:
        return _find(Path(repository), model)
    except Exception:  # a repository being rewritten, a broken tokenizer file: no counts, not a failure
        return None


def _labels(repository: Path, model: str, depth: int = 0) -> tuple[str, ...] | None:
    folder = repository / model
    if (folder / "labels.txt").is_file():
        return tuple((folder / "labels.txt").read_text(encoding="utf-8").splitlines())
    config = _config(folder)
    if config is None or depth > 4 or config.platform != "ensemble":
        return None
    for step in config.ensemble_scheduling.step:
        found = _labels(repository, step.model_name, depth + 1)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=64)
def labels(repository: Path | None, model: str) -> tuple[str, ...] | None:
    """A classifier pipeline's class names by index (its labels step's ``labels.txt``; None: not found)."""
    if repository is None:
        return None
    try:
        return _labels(Path(repository), model)
    except Exception:  # unreadable: the route names classes by what it saw
        return None
