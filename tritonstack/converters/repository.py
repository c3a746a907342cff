"""Write model versions into a Triton model repository, atomically.

Layout: ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/VERSION/{model.onnx|model.plan, model.py,
serving/, metadata.json}`` (python-ort versions carry the serving code, :mod:`.carry`). A version
is assembled in a staging folder on the same filesystem and moved
into place with one ``rename``: a failed export leaves no half-written version, and Triton never
sees a partial one. Staging folders are named ``.staging-*``: inside an existing model folder
Triton ignores them (not numeric); for a brand-new model the whole ``NAME`` folder appears at once.

A new version never breaks the ones already there: its inputs/outputs must match the existing
``config.pbtxt`` (otherwise export under another ``--name``), and existing versions are never
touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tritonstack.converters.errors import EnvironmentProblem, InvalidSpec, NoSpace, RepositoryNotWritable, is_no_space
from tritonstack.converters.spec import MAX_VERSION
from tritonstack.converters.triton_config import ModelConfig

__all__ = ["atomic_write_text", "existing_versions", "next_version", "pinned_versions",
           "prune_versions", "read_config", "replace_folder", "write_config", "write_version"]


def existing_versions(model_dir: Path) -> list[int]:
    """Numeric version folders of a model, sorted."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))


def next_version(repo: Path, name: str) -> int:
    """The next free version number (1 for a new model)."""
    versions = existing_versions(Path(repo) / name)
    return versions[-1] + 1 if versions else 1


def read_config(model_dir: Path):
    """The existing ``config.pbtxt`` as ``model_config_pb2.ModelConfig`` (None if absent)."""
    path = model_dir / "config.pbtxt"
    if not path.exists():
        return None
    return _parse_pbtxt(path.read_text())


def _io_signature(config) -> list[tuple[str, str, str, tuple[int, ...]]]:
    from tritonclient.grpc import model_config_pb2 as pb

    sig = [("input", t.name, pb.DataType.Name(t.data_type), tuple(t.dims)) for t in config.input]
    sig += [("output", t.name, pb.DataType.Name(t.data_type), tuple(t.dims)) for t in config.output]
    return sorted(sig)


def _parse_pbtxt(pbtxt: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(pbtxt, model_config_pb2.ModelConfig())


def served_versions(config, versions: list[int]) -> list[int]:
    """Which of ``versions`` the config's version policy loads (Triton's default: the latest)."""
    policy = config.version_policy.WhichOneof("policy_choice")
    if policy == "specific":
        return [v for v in versions if v in set(config.version_policy.specific.versions)]
    if policy == "all":
        return list(versions)
    latest = config.version_policy.latest.num_versions if policy == "latest" else 1
    return list(versions)[-max(latest, 1):]


def pinned_versions(model_dir: Path) -> set[int]:
    """The versions a ``specific`` version policy names (a rollout pins what it serves)."""
    config = read_config(Path(model_dir))
    if config is None or config.version_policy.WhichOneof("policy_choice") != "specific":
        return set()
    return set(config.version_policy.specific.versions)


#: Config parameters of a model that takes raw text (``serve_text``), read by the runner.
TEXT_PARAMETERS = ("text_input", "tokenizer_file", "max_length", "pad_token", "max_chars")


def _keep_served_state(pbtxt: str, old) -> str:
    """``pbtxt`` with what other tools set on the served model, kept across a new export or a
    serving change: the version policy (``python -m tritonstack.rollout`` moves which versions are served)
    and the text input ``serve_text`` added (its input, parameters and optional token inputs)."""
    if old is None or not (old.HasField("version_policy") or _text_input(old)):
        return pbtxt
    from google.protobuf import text_format

    new = _parse_pbtxt(pbtxt)
    if old.HasField("version_policy"):
        new.version_policy.CopyFrom(old.version_policy)
    if _text_input(old):
        _copy_text_front(old, new)
    return text_format.MessageToString(new)


def _text_input(config) -> str:
    value = config.parameters.get("text_input")
    return value.string_value if value is not None else ""


def _copy_text_front(old, new) -> None:
    for key in TEXT_PARAMETERS:
        if key in old.parameters:
            new.parameters[key].CopyFrom(old.parameters[key])
    have = {t.name for t in new.input}
    for tensor in old.input:
        if tensor.name not in have:
            new.input.append(tensor)
    for tensor in new.input:
        tensor.optional = True


def serve_text(model_dir: Path, tokenizer_json: Path | str, *, max_length: int, pad_token: str | None = None,
               text_input: str = "TEXT", max_chars: int = 20_000) -> Path:
    """Let a python-ort text model take raw text: ``text_input`` (BYTES, one text per row) is
    tokenized by the model's runner with ``tokenizer_json`` (copied beside config.pbtxt), so a
    pipeline needs no tokenizer model in front of it. Token inputs stay accepted (optional).

    Raises:
        InvalidSpec: no version, a model not served by the python-ort runner, or a version
            exported before the runner could tokenize (no ``serving/text.py``).
    """
    from google.protobuf import text_format

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    versions = existing_versions(model_dir)
    if config is None or not versions:
        raise InvalidSpec(f"model {model_dir.name!r} has no exported version in {model_dir.parent}; "
                          "export it first")
    if config.backend != "python" or "input_ids" not in {t.name for t in config.input}:
        raise InvalidSpec(f"model {model_dir.name!r} is not a text model served by the python-ort runner; "
                          "only that runner can tokenize (export with --target python-ort)")
    stale = [v for v in served_versions(config, versions)
             if not (model_dir / str(v) / "serving" / "text.py").is_file()]
    if stale:
        raise InvalidSpec(f"model {model_dir.name!r} version(s) {stale} predate raw-text serving "
                          "(no serving/text.py); export the model again")
    from tritonclient.grpc import model_config_pb2

    new = model_config_pb2.ModelConfig()
    new.CopyFrom(config)
    if text_input not in {t.name for t in new.input}:
        new.input.append(model_config_pb2.ModelInput(
            name=text_input, data_type=model_config_pb2.TYPE_STRING, dims=[1]))
    for tensor in new.input:
        tensor.optional = True
    settings = {"text_input": text_input, "tokenizer_file": "tokenizer.json", "max_length": str(max_length),
                "max_chars": str(max_chars), "pad_token": pad_token or ""}
    for key, value in settings.items():
        new.parameters[key].string_value = value
    try:
        atomic_write_bytes(model_dir / "tokenizer.json", Path(tokenizer_json).read_bytes())
        atomic_write_text(model_dir / "config.pbtxt", text_format.MessageToString(new))
    except OSError as exc:
        raise RepositoryNotWritable(f"cannot write {model_dir}: {exc}") from exc
    return model_dir / "config.pbtxt"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def as_if_created(path: Path) -> None:
    """Give a file from ``mkstemp`` (0600) or a folder from ``mkdtemp`` (0700) the mode an ordinary
    ``open``/``mkdir`` would, under the umask: a repository built by one user is served by
    another (the images run as uid 1000), and Triton must read every file of it."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_UMASK)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, never a part."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        as_if_created(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# A writer assembles in a hidden staging folder beside the final place and renames it in. The folder
# names its writer in .owner, so that the launcher removes it at the next start if the writer was
# killed (tritonstack/server/leftovers.py reads this format; tests/server/test_leftovers.py holds
# the two together).
STAGING_PREFIX, OWNER_FILE = ".staging-", ".owner"


def staging_folder(parent: Path, name: str) -> Path:
    """A new ``PARENT/.staging-NAME-*`` folder that names its writer (this process)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=parent))
    try:
        as_if_created(folder)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        (folder / OWNER_FILE).write_text(json.dumps(owner))
    except BaseException:  # a full disk: no folder left without its owner
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def replace_folder(repository: Path, name: str, fill) -> Path:
    """Assemble ``REPOSITORY/NAME`` with ``fill(folder)`` beside its place and swap it in.

    A Triton polling the repository never sees half a model, and a failed fill leaves the old
    folder intact (the ensembles' Python steps and ensembles are written this way).
    """
    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    final = repository / name
    staging = staging_folder(repository, name)
    try:
        fill(staging)
        (staging / OWNER_FILE).unlink()
        old = None
        if final.exists():
            old = staging_folder(repository, f"{name}-old")
            os.replace(final, old / name)
        os.replace(staging, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_config(repo: Path, config: ModelConfig) -> Path:
    """Rewrite an existing model's ``config.pbtxt`` (serving settings); no version is added.

    Raises:
        InvalidSpec: the model has no version yet, or the new config changes its inputs/outputs.
    """
    model_dir = Path(repo) / config.name
    old = read_config(model_dir)
    if old is None or not existing_versions(model_dir):
        raise InvalidSpec(f"model {config.name!r} has no exported version in {repo}; export it first")
    pbtxt = _keep_served_state(config.to_pbtxt(), old)
    if _io_signature(old) != _io_signature(_parse_pbtxt(pbtxt)):
        raise InvalidSpec(f"a serving change cannot change {config.name!r}'s inputs/outputs; export a "
                          "new version instead")
    path = model_dir / "config.pbtxt"
    try:
        write_warmup_files(model_dir, config)
        atomic_write_text(path, pbtxt)
    except OSError as exc:
        raise RepositoryNotWritable(f"cannot rewrite {path}: {exc}") from exc
    return path


def write_warmup_files(model_dir: Path, config: ModelConfig) -> None:
    """``MODEL/warmup/<input>``: the data the config's warmup reads, written before the config
    that names it (Triton fails a load whose warmup file is missing)."""
    files = config.warmup_files()
    if not files:
        return
    folder = Path(model_dir) / "warmup"
    folder.mkdir(exist_ok=True)
    as_if_created(folder)
    for name, data in files.items():
        path = folder / name
        if not path.is_file() or path.read_bytes() != data:
            atomic_write_bytes(path, data)


def prune_versions(model_dir: Path, keep: int) -> list[int]:
    """Delete all but the ``keep`` newest versions of a model; returns the versions deleted.
    A version the config pins (``version_policy specific``) is served, so it is never deleted."""
    if keep < 1:
        raise InvalidSpec(f"--keep must be 1 or more, got {keep}")
    versions = existing_versions(model_dir)
    pinned = pinned_versions(model_dir)
    doomed = [v for v in versions[:-keep] if v not in pinned]
    for version in doomed:
        shutil.rmtree(Path(model_dir) / str(version))
    return doomed


def ensure_writable(repo: Path) -> Path:
    """Create ``repo`` if needed and prove it is writable (RepositoryNotWritable otherwise)."""
    repo = Path(repo)
    try:
        repo.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=repo, prefix=".write-test-"):
            pass
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpace(f"{exc.strerror or exc} in model repository {repo}; free space there or pass "
                          "--model-repository DIR on a disk with room") from exc
        raise RepositoryNotWritable(
            f"cannot write to model repository {repo} ({exc.strerror or exc}); "
            "pass --model-repository DIR pointing at a writable folder"
        ) from exc
    return repo.resolve()


def write_version(
    repo: Path,
    config: ModelConfig,
    files: Mapping[str, Path | bytes | str],
    metadata: Mapping[str, object],
    version: int | None = None,
) -> Path:
    """Write one new version of ``config.name``; returns the version folder.

    Args:
        repo: Model repository root (created if missing).
        config: The model's config; written to ``NAME/config.pbtxt``.
        files: ``{file name in the version folder: source path or content}``.
        metadata: Written as ``metadata.json`` in the version folder.
        version: Version number; default the next free one. An existing one is refused.

    Raises:
        InvalidSpec: the version exists, or the IO differs from the existing config.
        RepositoryNotWritable: the repository cannot be written.
        NoSpace: the disk filled up (or a quota or file size limit was hit) while writing.

    A failed write leaves nothing behind: no version folder, no staging folder, the old
    ``config.pbtxt``; the versions already there, and what Triton serves of them, are untouched.
    """
    repo = ensure_writable(repo)
    model_dir = repo / config.name
    versions = existing_versions(model_dir)
    version = version if version is not None else (versions[-1] + 1 if versions else 1)
    if not 1 <= version <= MAX_VERSION:
        raise InvalidSpec(f"version {version} of {config.name!r} is outside 1..{MAX_VERSION:,}, the versions Triton "
                          f"reads; pass --model-version with a smaller number (existing: {versions[-3:]})")
    if version in versions:
        raise InvalidSpec(f"{model_dir / str(version)} already exists; omit --model-version to take "
                          f"the next free one ({versions[-1] + 1})")
    old = read_config(model_dir)
    pbtxt = _keep_served_state(config.to_pbtxt(), old)
    if old is not None and _io_signature(old) != _io_signature(_parse_pbtxt(pbtxt)):
        raise InvalidSpec(
            f"model {config.name!r} already has versions {versions} with other inputs/outputs; "
            "a new version must keep them (export under another --name)"
        )
    staging_parent = model_dir if model_dir.is_dir() else repo
    staging: Path | None = None
    moved_in: Path | None = None
    filling = False  # a source that cannot be read is the caller's error, raised as it is
    try:
        staging = staging_folder(staging_parent, config.name)
        filling = True
        version_dir = staging / str(version)
        version_dir.mkdir()
        for name, src in files.items():
            dest = version_dir / name
            dest.parent.mkdir(parents=True, exist_ok=True)  # serving/ (converters.carry)
            if isinstance(src, Path):
                shutil.copyfile(src, dest)
            elif isinstance(src, bytes):
                dest.write_bytes(src)
            else:
                dest.write_text(src)
        (version_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        (staging / "config.pbtxt").write_text(pbtxt)
        filling = False
        if staging_parent == repo:  # new model: the whole folder appears at once
            write_warmup_files(staging, config)
            (staging / OWNER_FILE).unlink()
            os.rename(staging, model_dir)
            return model_dir / str(version)
        os.rename(version_dir, model_dir / str(version))
        moved_in = model_dir / str(version)
        write_warmup_files(model_dir, config)
        os.replace(staging / "config.pbtxt", model_dir / "config.pbtxt")
        moved_in = None
        return model_dir / str(version)
    except OSError as exc:
        if moved_in is not None and staging is not None:  # the old config still serves: take it back out
            with contextlib.suppress(OSError):
                os.replace(moved_in, staging / moved_in.name)
        if staging is not None:  # before measuring what is free
            shutil.rmtree(staging, ignore_errors=True)
        if filling and not is_no_space(exc):
            raise
        raise _write_failed(exc, repo, config.name, version, files, staging_parent) from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _write_failed(exc: OSError, repo: Path, name: str, version: int, files: Mapping[str, Path | bytes | str],
                  where: Path) -> EnvironmentProblem:
    """The one-line error of a version that could not be written (nothing of it is left)."""
    if not is_no_space(exc):
        return RepositoryNotWritable(f"cannot write version {version} of {name!r} into {where} "
                                     f"({exc.strerror or exc}); pass --model-repository DIR pointing at a "
                                     "writable folder")
    need = sum(src.stat().st_size if isinstance(src, Path) else len(src) for src in files.values())
    try:
        free = f"{_size(shutil.disk_usage(repo).free)} free"
    except OSError:
        free = "free space unknown"
    return NoSpace(f"{exc.strerror or exc} writing version {version} of {name!r} into {repo} (it needs about "
                   f"{_size(need)}, {free}); nothing of it was left and the versions already there "
                   "are untouched; free space there or pass --model-repository DIR on a disk with room, "
                   "then rerun (the checked steps are reused)")


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
