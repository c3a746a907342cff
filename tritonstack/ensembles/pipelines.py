"""The demo repository's Python steps and ensembles, as data rendered to ``config.pbtxt``.

Configs go through ``tritonclient.grpc.model_config_pb2.ModelConfig`` (``json_format.ParseDict``),
so the real schema checks every field; ``text_format`` writes them.

The demo's two pipelines are one step each: MiniLM tokenizes its own text and the digits
classifier's graph scales its pixels and computes its softmax, so each request crosses one
Python-backend stub, not three (docs/benchmarks.md, "Pipelines at the hardware's limit").

Batching choices for the Python steps ``python -m tritonstack.ensembles add`` writes (tokenizer, labels):
* one instance each and a short queue delay: their work is microseconds per request, so one
  instance keeps up, and batching amortises the stub's per-call IPC.
* the tokenizer batches up to 64 texts: encode_batch is one Rust call, parallel inside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from tritonstack.converters.triton_config import DynamicBatching
from tritonstack.demo import contract


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


WARMUP_TEXT = b"A sentence that warms up the step before it takes traffic."
WARMUP_LENGTH = 4  # a variable axis' size in the warmup request


@dataclasses.dataclass(frozen=True)
class PythonStep:
    """A Python-backend model whose ``model.py`` is ``tritonstack/serving/models/<adapter>.py``."""

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
        if any(t.data_type == "TYPE_STRING" and t.dims != (1,) for t in self.inputs):
            raise ValueError(f"{self.name}: text inputs are one string per row (dims [1])")

    def config(self) -> model_config_pb2.ModelConfig:
        return _parse({
            "name": self.name, "backend": "python", "max_batch_size": self.max_batch_size,
            "input": [t.as_input() for t in self.inputs],
            "output": [t.as_output() for t in self.outputs],
            "dynamic_batching": self.batching.to_dict(),
            "instance_group": [{"kind": "KIND_CPU", "count": self.instances}],
            "parameters": {k: {"string_value": v} for k, v in self.parameters.items()},
            "model_warmup": [self.warmup()],
        })

    def warmup(self) -> dict:
        """One request through ``execute`` before the step takes traffic (imports, first calls),
        so the first caller does not pay for them: zeros for numbers, a sentence for text
        (an empty string would be refused), from ``warmup/`` beside config.pbtxt."""
        inputs = {}
        for t in self.inputs:
            dims = [d if d > 0 else WARMUP_LENGTH for d in t.dims]
            if t.data_type == "TYPE_STRING":
                inputs[t.name] = {"data_type": t.data_type, "dims": dims, "input_data_file": t.name}
            else:
                inputs[t.name] = {"data_type": t.data_type, "dims": dims, "zero_data": True}
        return {"name": "warmup", "batch_size": 1, "inputs": inputs}

    def warmup_files(self) -> dict[str, bytes]:
        """``warmup/<input>`` for each text input (one element, dims [1]): Triton's BYTES layout,
        a little-endian uint32 length then the bytes."""
        return {t.name: len(WARMUP_TEXT).to_bytes(4, "little") + WARMUP_TEXT
                for t in self.inputs if t.data_type == "TYPE_STRING"}


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
    # Files written into the model folder beside config.pbtxt (the outputs' label files).
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Triton's response cache for the whole pipeline: every one here is deterministic (same input,
    # same bytes out). Active only on a server started with a cache (--response-cache-mb).
    response_cache: bool = True

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
            "response_cache": {"enable": self.response_cache},
        })


def _parse(config: dict) -> model_config_pb2.ModelConfig:
    return json_format.ParseDict(config, model_config_pb2.ModelConfig())


def to_pbtxt(config: model_config_pb2.ModelConfig) -> str:
    return text_format.MessageToString(config)


# -- the demo pipelines ----------------------------------------------------------------------
EMBED_MAX_BATCH = 64
DIGITS_MAX_BATCH = 256
# Overload is shed by the exported model of each pipeline (its bounded queue, ensembles.exports),
# not by these Python steps: they cost ~1 ms a batch, and any queue policy turns off Triton's
# payload prefetching, after which a step whose queue fills while its instance is busy can sleep
# 500 ms before the batcher looks again (seen as 500 ms queue waits in Triton's trace during the
# spike campaign; docs/benchmarks.md, "Overload").
TOKEN_NAMES = ("input_ids", "attention_mask", "token_type_ids")
LABELS = tuple(str(d) for d in range(contract.DIGIT_CLASSES))
LABELS_FILE = "labels.txt"
LABELS_TEXT = "\n".join(LABELS) + "\n"
TEXT_TASKS = ("feature-extraction", "text-classification", "rerank")


def _specs(tensors: tuple[contract.Tensor, ...],
           label_filename: Mapping[str, str] | None = None) -> tuple[TensorSpec, ...]:
    """The contract's tensors (demo.contract) as config specs."""
    files = label_filename or {}
    return tuple(TensorSpec(t.name, t.data_type, t.dims, **({"label_filename": files[t.name]}
                                                            if t.name in files else {}))
                 for t in tensors)


@dataclasses.dataclass(frozen=True)
class TextModel:
    """What a text pipeline needs to know of an exported text model."""

    name: str
    task: str  # one of TEXT_TASKS
    inputs: tuple[str, ...]  # the token tensors it takes (a subset of TOKEN_NAMES)
    output: str  # its one output: embedding or logits
    output_dims: tuple[int, ...]
    max_batch_size: int
    max_length: int  # tokens, the tokenizer truncates there
    pad_token: str | None = None  # None: the tokenizer file's own
    labels: tuple[str, ...] = ()  # text-classification: index -> name
    # The model tokenizes TEXT in its own runner (converters.repository.serve_text): the
    # pipeline has no tokenizer step.
    takes_text: bool = False

    def __post_init__(self) -> None:
        if self.task not in TEXT_TASKS:
            raise ValueError(f"task {self.task!r}: choose one of {', '.join(TEXT_TASKS)}")
        unknown = [i for i in self.inputs if i not in TOKEN_NAMES]
        if unknown or "input_ids" not in self.inputs:
            raise ValueError(f"model {self.name} takes inputs {list(self.inputs)}; a tokenizer step "
                             f"produces {', '.join(TOKEN_NAMES)} only, input_ids among them")
        if self.max_length < 2 or self.max_batch_size < 1:
            raise ValueError(f"model {self.name}: max_length must be >= 2 and max_batch_size >= 1")
        if self.task == "text-classification" and len(self.labels) != self.output_dims[-1]:
            raise ValueError(f"model {self.name} has {self.output_dims[-1]} logits but "
                             f"{len(self.labels)} label names")
        if self.takes_text and self.task == "rerank":
            raise ValueError(f"model {self.name}: a reranker reads (QUERY, TEXT) pairs, which only the "
                             "tokenizer step encodes; serve it with one")
        if self.task == "rerank" and self.output_dims != (1,):
            raise ValueError(f"model {self.name} outputs {list(self.output_dims)} values per row; "
                             "a reranker (cross-encoder) outputs one score")


def step_names(model: str) -> tuple[str, str]:
    """The Python steps :func:`text_pipeline` writes beside ``model``: its tokenizer, and a
    classifier's labels."""
    return f"{model}_tokenizer", f"{model}_labels"


def text_pipeline(ensemble: str, model: TextModel) -> tuple[tuple[PythonStep, ...], Ensemble]:
    """The Python steps and the ensemble that serve ``model`` under the name ``ensemble``:

    * feature-extraction: TEXT [1] BYTES -> tokenizer -> model -> EMBEDDING [d] FP32;
    * text-classification: TEXT -> tokenizer -> model -> labels -> LABEL [1] BYTES (the class
      name), PROBABILITIES [k] FP32 (with labels.txt, so Triton's classification extension works);
    * rerank: QUERY [1] BYTES, TEXT [1] BYTES -> tokenizer (the pair) -> model -> SCORE [1] FP32,
      the cross-encoder's raw logit (higher ranks first).
    """
    text = TensorSpec("TEXT", "TYPE_STRING", (1,))
    pair = model.task == "rerank"
    inputs = (TensorSpec("QUERY", "TYPE_STRING", (1,)), text) if pair else (text,)
    python_steps: tuple[PythonStep, ...] = ()
    if model.takes_text:
        steps = [Step(model.name, {"TEXT": "TEXT"}, {})]
    else:
        tokenizer = _tokenizer_step(model, inputs)
        tokens = [t.name for t in tokenizer.outputs]
        steps = [Step(tokenizer.name, {t.name: t.name for t in inputs}, {n: n for n in tokens}),
                 Step(model.name, {n: n for n in tokens}, {})]
        python_steps = (tokenizer,)
    files: dict[str, str] = {}
    if model.task == "feature-extraction":
        outputs: tuple[TensorSpec, ...] = (TensorSpec("EMBEDDING", "TYPE_FP32", model.output_dims),)
        steps[-1] = dataclasses.replace(steps[-1], output_map={model.output: "EMBEDDING"})
    elif pair:
        outputs = (TensorSpec("SCORE", "TYPE_FP32", (1,)),)
        steps[-1] = dataclasses.replace(steps[-1], output_map={model.output: "SCORE"})
    else:
        labels_text = "\n".join(model.labels) + "\n"
        outputs = (TensorSpec("LABEL", "TYPE_STRING", (1,)),
                   TensorSpec("PROBABILITIES", "TYPE_FP32", model.output_dims, label_filename=LABELS_FILE))
        post = PythonStep(name=step_names(model.name)[1], adapter="labels",
                          inputs=(TensorSpec("logits", "TYPE_FP32", model.output_dims),), outputs=outputs,
                          max_batch_size=model.max_batch_size, files={LABELS_FILE: labels_text})
        steps[-1] = dataclasses.replace(steps[-1], output_map={model.output: "logits"})
        steps.append(Step(post.name, {"logits": "logits"},
                          {"LABEL": "LABEL", "PROBABILITIES": "PROBABILITIES"}))
        python_steps += (post,)
        files[LABELS_FILE] = labels_text
    return python_steps, Ensemble(name=ensemble, inputs=inputs, outputs=outputs, steps=tuple(steps),
                                  max_batch_size=model.max_batch_size, files=files)


def _tokenizer_step(model: TextModel, inputs: tuple[TensorSpec, ...]) -> PythonStep:
    """``MODEL_tokenizer``: ``inputs`` (TEXT, and QUERY for a reranker's pairs) to the model's
    token inputs."""
    parameters = {"max_length": str(model.max_length), "max_chars": "20000",
                  "outputs": ",".join(model.inputs)}
    if model.pad_token:
        parameters["pad_token"] = model.pad_token
    if model.task == "rerank":
        parameters["pair_input"] = "QUERY"
    return PythonStep(name=step_names(model.name)[0], adapter="tokenizer", inputs=inputs,
                      outputs=tuple(TensorSpec(n, "TYPE_INT64", (-1,)) for n in model.inputs),
                      max_batch_size=model.max_batch_size, parameters=parameters)


def text_steps(encoder: str, max_length: int) -> Ensemble:
    """The demo's embed pipeline over MiniLM (demo.contract), through the general text pipeline:
    one step, MiniLM tokenizing TEXT in its own runner (``converters.repository.serve_text``).
    Measured on AMD Zen 5 (``python -m tritonstack.loadtest bench-pipelines``, see README): the tokenizer
    step in front cost a Python-backend hop a request, and a request refused at MiniLM's full
    queue had been tokenized first."""
    _, embed = text_pipeline(contract.EMBED, TextModel(
        name=encoder, task="feature-extraction", inputs=TOKEN_NAMES, output="embedding",
        output_dims=contract.PIPELINES[0].outputs[0].dims, max_batch_size=EMBED_MAX_BATCH,
        max_length=max_length, takes_text=True))
    return embed


def digit_steps(classifier: str) -> Ensemble:
    """``classify_digit``: one step, the exported classifier, whose graph scales the pixels and
    computes the softmax and the label itself (``converters.sources.digits.DigitsClassifier``)
    and whose runner refuses pixels outside 0..16. The ensemble keeps the pipeline's public
    name and contract, the response cache, and a step a rollout's router can take over."""
    label, probabilities = _specs(contract.PIPELINES[1].outputs,
                                  label_filename={"PROBABILITIES": LABELS_FILE})
    return Ensemble(
        name=contract.CLASSIFY, max_batch_size=DIGITS_MAX_BATCH,
        inputs=_specs(contract.PIPELINES[1].inputs),
        outputs=(label, probabilities),
        steps=(Step(classifier, {"image": "IMAGE"},
                    {"label": "LABEL", "probabilities": "PROBABILITIES"}),),
        files={LABELS_FILE: LABELS_TEXT},
    )
