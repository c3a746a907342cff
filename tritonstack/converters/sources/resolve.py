"""Turn the SOURCE argument into a checked source: an HF folder or a torch factory."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tritonstack.converters.errors import InvalidSpec, UnknownSource
from tritonstack.converters.sources.hf import SHORT_NAMES, HFSource, hf_source
from tritonstack.converters.sources.torch_module import TorchInputSpec

__all__ = ["TorchSource", "resolve_source", "source_fingerprint"]

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class TorchSource:
    """A module and its spec, from ``package.module:factory``."""

    origin: str
    module: nn.Module
    spec: TorchInputSpec
    file: Path | None

    @property
    def kind(self) -> str:
        return "torch"

    @property
    def task(self) -> str:
        return self.spec.task


def load_factory(origin: str) -> TorchSource:
    """Import ``package.module:factory``, call it, check it returned ``(nn.Module, TorchInputSpec)``."""
    module_name, attr = origin.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UnknownSource(f"cannot import module {module_name!r} from {origin!r} ({exc}); "
                            "check the spelling and that it is on PYTHONPATH") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        choices = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        hint = difflib.get_close_matches(attr, choices, n=1)
        raise UnknownSource(f"{module_name} has no callable {attr!r}"
                            + (f"; did you mean {module_name}:{hint[0]}?" if hint else ""))
    result = factory()
    if (not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[0], nn.Module)
            or not isinstance(result[1], TorchInputSpec)):
        raise InvalidSpec(f"{origin} must return (torch.nn.Module, TorchInputSpec), "
                          f"got {type(result).__name__}")
    source_file = inspect.getsourcefile(module)
    return TorchSource(origin, result[0].eval(), result[1], Path(source_file) if source_file else None)


def resolve_source(source: str, task: str | None = None) -> HFSource | TorchSource:
    """``minilm`` | an HF folder | ``package.module:factory`` -> a checked source.

    Raises:
        UnknownSource: none of the three forms (with a did-you-mean for short names).
        MissingWeights, UnsupportedModel: see :func:`converters.sources.hf.hf_source`.
    """
    if source in SHORT_NAMES:
        return hf_source(SHORT_NAMES[source](), task)
    path = Path(source).expanduser()
    if path.is_dir():
        return hf_source(path, task)
    if FACTORY.match(source):
        loaded = load_factory(source)
        if task is not None and task != loaded.spec.task:
            raise InvalidSpec(f"--task {task} contradicts {source}'s spec (task {loaded.spec.task}); "
                              "drop --task or fix the factory")
        return loaded
    hint = difflib.get_close_matches(source.lower(), list(SHORT_NAMES), n=1)
    if hint:
        raise UnknownSource(f"unknown source {source!r}; did you mean {hint[0]!r}?")
    if path.exists():
        raise UnknownSource(f"{source} is a file; SOURCE must be an HF model folder, "
                            f"{', '.join(SHORT_NAMES)}, or package.module:factory")
    raise UnknownSource(f"unknown source {source!r}: no such folder, not a short name "
                        f"({', '.join(SHORT_NAMES)}), not package.module:factory")


def source_fingerprint(source: HFSource | TorchSource) -> dict[str, str]:
    """What identifies the source in metadata.json: where it is and a sha256 of its weights/code."""
    digest = hashlib.sha256()
    if isinstance(source, HFSource):
        files = [source.folder / "config.json", *source.weight_files()]
        where = str(source.folder)
    else:
        files = [source.file] if source.file else []
        for name, tensor in sorted(source.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        where = source.origin
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return {"kind": source.kind, "source": where, "sha256": digest.hexdigest()}
