"""The demo repository's Python steps and ensembles, as data rendered to ``config.pbtxt``.

Configs go through ``tritonclient.grpc.model_config_pb2.ModelConfig`` (``json_format.ParseDict``),
so the real schema checks every field; ``text_format`` writes them.

Batching choices (measured with ``python -m ensembles bench``, see README):
* Python steps get one instance each and a short queue delay: their work is microseconds per
  request, so one instance keeps up, and batching amortises the stub's per-call IPC.
* the tokenizer batches up to 64 texts: encode_batch is one Rust call, parallel inside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from converters.triton_config import DynamicBatching
from demo import contract
from ensembles.processing.digits import LABELS


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's name: TYPE_FP32, TYPE_INT64, TYPE_STRING...
    dims: tuple[int, ...]
    label_filename: str | None = None
    allow_ragged_batch: bool = False

    def __post_init__(self) -> None:
        if not self.data_type.startswith("TYPE_"):
            raise ValueError(f"{self.name}: data_type must be a Triton TYPE_* name, got {self.data_type}")

    def as_input(self) -> dict:
        spec: dict = {"name": self.name, "data_type": self.data_type, "dims": list(self.dims)}
        if self.allow_ragged_batch:
            spec["allow_ragged_batch"] = True
        return spec

    def as_output(self) -> dict:
        spec: dict = {"name": self.name, "data_type": self.data_type, "dims": list(self.dims)}
        if self.label_filename:
            spec["label_filename"] = self.label_filename
        return spec


@dataclasses.dataclass(frozen=True)
class PythonStep:
    """A Python-backend model whose ``model.py`` is ``ensembles/models/<adapter>.py``."""

    name: str
    adapter: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    instances: int = 1
    # The demo's steps carry no queue policy (see "the demo pipelines" below).
    batching: DynamicBatching = DynamicBatching(max_queue_delay_us=500)
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Files written into the model folder beside config.pbtxt (Triton reads label files there).
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1:
            raise ValueError(f"{self.name}: max_batch_size and instances must be >= 1")

    def config(self) -> model_config_pb2.ModelConfig:
        return _parse({
            "name": self.name, "backend": "python", "max_batch_size": self.max_batch_size,
            "input": [t.as_input() for t in self.inputs],
            "output": [t.as_output() for t in self.outputs],
            "dynamic_batching": self.batching.to_dict(),
            "instance_group": [{"kind": "KIND_CPU", "count": self.instances}],
            "parameters": {k: {"string_value": v} for k, v in self.parameters.items()},
        })


@dataclasses.dataclass(frozen=True)
class Step:
    model: str
    input_map: Mapping[str, str]   # step's input name -> ensemble tensor
    output_map: Mapping[str, str]  # step's output name -> ensemble tensor


@dataclasses.dataclass(frozen=True)
class Ensemble:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: tuple[Step, ...]
    max_batch_size: int

    def __post_init__(self) -> None:
        available = {t.name for t in self.inputs}
        for step in self.steps:
            missing = set(step.input_map.values()) - available
            if missing:
                raise ValueError(f"ensemble {self.name}: step {step.model} reads {sorted(missing)} "
                                 "before any step produces it")
            available |= set(step.output_map.values())
        unproduced = {t.name for t in self.outputs} - available
        if unproduced:
            raise ValueError(f"ensemble {self.name}: no step produces output(s) {sorted(unproduced)}")

    def config(self) -> model_config_pb2.ModelConfig:
        return _parse({
            "name": self.name, "platform": "ensemble", "max_batch_size": self.max_batch_size,
            "input": [t.as_input() for t in self.inputs],
            "output": [t.as_output() for t in self.outputs],
            "ensemble_scheduling": {"step": [
                {"model_name": s.model, "model_version": -1,
                 "input_map": dict(s.input_map), "output_map": dict(s.output_map)}
                for s in self.steps]},
        })


def _parse(config: dict) -> model_config_pb2.ModelConfig:
    return json_format.ParseDict(config, model_config_pb2.ModelConfig())


def to_pbtxt(config: model_config_pb2.ModelConfig) -> str:
    return text_format.MessageToString(config)


# -- the demo pipelines ----------------------------------------------------------------------
EMBED_MAX_BATCH = 64
DIGITS_MAX_BATCH = 256
# The digits steps take microseconds a request: a short wait is enough to form a batch.
DIGITS_BATCHING = DynamicBatching(max_queue_delay_us=200)
# Overload is shed by the exported model of each pipeline (its bounded queue, ensembles.exports),
# not by these Python steps: they cost ~1 ms a batch, and any queue policy turns off Triton's
# payload prefetching, after which a step whose queue fills while its instance is busy can sleep
# 500 ms before the batcher looks again (seen as 500 ms queue waits in Triton's trace during the
# spike campaign; README, Reliability).
TOKEN_OUTPUTS = tuple(TensorSpec(n, "TYPE_INT64", (-1,)) for n in
                      ("input_ids", "attention_mask", "token_type_ids"))
LABELS_FILE = "labels.txt"
LABELS_TEXT = "\n".join(LABELS) + "\n"


def _specs(tensors: tuple[contract.Tensor, ...],
           label_filename: Mapping[str, str] | None = None) -> tuple[TensorSpec, ...]:
    """The contract's tensors (demo.contract) as config specs."""
    files = label_filename or {}
    return tuple(TensorSpec(t.name, t.data_type, t.dims, **({"label_filename": files[t.name]}
                                                            if t.name in files else {}))
                 for t in tensors)


def text_steps(encoder: str, max_length: int) -> tuple[PythonStep, Ensemble]:
    tokenizer = PythonStep(
        name=f"{encoder}_tokenizer", adapter="tokenizer",
        inputs=(TensorSpec("TEXT", "TYPE_STRING", (1,)),), outputs=TOKEN_OUTPUTS,
        max_batch_size=EMBED_MAX_BATCH,
        parameters={"max_length": str(max_length), "max_chars": "20000"},
    )
    embed = Ensemble(
        name=contract.EMBED, max_batch_size=EMBED_MAX_BATCH,
        inputs=_specs(contract.PIPELINES[0].inputs),
        outputs=_specs(contract.PIPELINES[0].outputs),
        steps=(
            Step(tokenizer.name, {"TEXT": "TEXT"}, {t.name: t.name for t in TOKEN_OUTPUTS}),
            Step(encoder, {t.name: t.name for t in TOKEN_OUTPUTS}, {"embedding": "EMBEDDING"}),
        ),
    )
    return tokenizer, embed


def digit_steps(classifier: str) -> tuple[PythonStep, PythonStep, Ensemble]:
    label, probabilities = _specs(contract.PIPELINES[1].outputs,
                                  label_filename={"PROBABILITIES": LABELS_FILE})
    preprocess = PythonStep(
        name="digits_preprocess", adapter="digits_preprocess",
        inputs=_specs(contract.PIPELINES[1].inputs),
        outputs=(TensorSpec("image", "TYPE_FP32", (1, *contract.DIGIT_SHAPE)),),
        max_batch_size=DIGITS_MAX_BATCH, batching=DIGITS_BATCHING,
    )
    postprocess = PythonStep(
        name="digits_postprocess", adapter="digits_postprocess",
        inputs=(TensorSpec("logits", "TYPE_FP32", (10,)),), outputs=(label, probabilities),
        max_batch_size=DIGITS_MAX_BATCH, batching=DIGITS_BATCHING, files={LABELS_FILE: LABELS_TEXT},
    )
    ensemble = Ensemble(
        name=contract.CLASSIFY, max_batch_size=DIGITS_MAX_BATCH,
        inputs=_specs(contract.PIPELINES[1].inputs),
        outputs=(label, probabilities),
        steps=(
            Step(preprocess.name, {"IMAGE": "IMAGE"}, {"image": "image"}),
            Step(classifier, {"image": "image"}, {"logits": "logits"}),
            Step(postprocess.name, {"logits": "logits"},
                 {"LABEL": "LABEL", "PROBABILITIES": "PROBABILITIES"}),
        ),
    )
    return preprocess, postprocess, ensemble
