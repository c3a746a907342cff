"""What a rollout changes in the model repository, each file replaced atomically:

* the model's version policy (``specific``: the versions a rollout serves, and afterwards the one
  it kept, so a later export never goes live by itself);
* the router step ``MODEL_router`` (``serving/models/router.py``), with the model's own inputs,
  outputs and batch size;
* every ensemble with a step on the model, pointed at the router and back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonstack.converters import carry
from tritonstack.converters.repository import (
    atomic_write_text,
    existing_versions,
    read_config,
    replace_folder,
)
from tritonstack.rollout.errors import BadRequest
from tritonstack.serving.agreement import kind_for

ROUTER_SUFFIX = "_router"


def router_name(model: str) -> str:
    return f"{model}{ROUTER_SUFFIX}"


def model_config(repository: Path, model: str) -> model_config_pb2.ModelConfig:
    """The model's config; refuses what a rollout cannot split (unknown, ensembles, routers)."""
    folder = Path(repository) / model
    config = read_config(folder) if folder.is_dir() else None
    if config is None:
        known = sorted(p.name for p in Path(repository).iterdir()
                       if (p / "config.pbtxt").is_file()) if Path(repository).is_dir() else []
        raise BadRequest(f"no model {model!r} in {repository}"
                         + (f"; models there: {', '.join(known)}" if known else
                            "; pass --model-repository DIR"))
    if config.platform == "ensemble" or model.endswith(ROUTER_SUFFIX):
        raise BadRequest(f"{model} is an ensemble or a router; roll out the model inside it "
                         "(e.g. minilm or digits_cnn)")
    return config


def versions(repository: Path, model: str) -> list[int]:
    return existing_versions(Path(repository) / model)


def kind(repository: Path, model: str, version: int) -> str:
    """embedding | classification | score, from the version's export metadata and its output."""
    config = model_config(repository, model)
    meta_file = Path(repository) / model / str(version) / "metadata.json"
    task = json.loads(meta_file.read_text()).get("task", "") if meta_file.is_file() else ""
    return kind_for(task, tuple(config.output[0].dims))


def set_versions(repository: Path, model: str, served: list[int]) -> None:
    """Serve exactly ``served`` (``version_policy specific``)."""
    path = Path(repository) / model / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    config.version_policy.Clear()
    config.version_policy.specific.versions.extend(sorted(served))
    atomic_write_text(path, text_format.MessageToString(config))


def write_router(repository: Path, model: str, kind_name: str) -> str:
    """``REPO/MODEL_router``: a Python step with the model's inputs and outputs."""
    target = model_config(repository, model)
    router = model_config_pb2.ModelConfig(name=router_name(model), backend="python",
                                          max_batch_size=target.max_batch_size)
    for src, dst in ((target.input, router.input), (target.output, router.output)):
        for tensor in src:
            copy = dst.add(name=tensor.name, data_type=tensor.data_type, dims=list(tensor.dims))
            if getattr(tensor, "optional", False):
                copy.optional = True
    # A short wait lets requests of one arm and shape go to the model as one BLS request.
    router.dynamic_batching.max_queue_delay_microseconds = 100
    # One instance answering through response senders keeps many batches in flight. Returning the
    # responses from execute instead holds one batch per instance: with two instances the same
    # throughput, but unstable enough that perf_analyzer could not settle at concurrency 16 in two
    # runs of three (scripts/rollout_cost.py, AMD Zen 5).
    router.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=1)
    for key, value in (("target", model), ("kind", kind_name)):
        router.parameters[key].string_value = value
    def fill(folder: Path) -> None:
        (folder / "1").mkdir()
        carry.copy_into(folder / "1", "router")
        (folder / "1" / "metadata.json").write_text(json.dumps({"serving": carry.record("router")}) + "\n")
        (folder / "config.pbtxt").write_text(text_format.MessageToString(router))

    replace_folder(repository, router.name, fill)
    return router.name


def remove_router(repository: Path, model: str) -> None:
    shutil.rmtree(Path(repository) / router_name(model), ignore_errors=True)


def ensembles_over(repository: Path, step: str) -> list[str]:
    """The ensembles with a step on ``step``."""
    found = []
    for folder in sorted(Path(repository).iterdir()):
        config = read_config(folder) if (folder / "config.pbtxt").is_file() else None
        if config is not None and config.platform == "ensemble" and any(
                s.model_name == step for s in config.ensemble_scheduling.step):
            found.append(folder.name)
    return found


def rewire(repository: Path, ensemble: str, old: str, new: str) -> None:
    """Point the ensemble's steps on ``old`` at ``new`` (always the latest version)."""
    path = Path(repository) / ensemble / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    for step in config.ensemble_scheduling.step:
        if step.model_name == old:
            step.model_name = new
            step.model_version = -1
    atomic_write_text(path, text_format.MessageToString(config))
