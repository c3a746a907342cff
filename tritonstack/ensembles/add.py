"""``python -m tritonstack.ensembles add NAME --model MODEL``: serve an exported text model as a pipeline.

The exported model (``python -m tritonstack.converters export DIR --name MODEL``) takes token ids; callers
send text. ``add`` writes, next to it in the repository:

* ``MODEL_tokenizer``: that model's own fast tokenizer (``tokenizer.json`` as transformers saves
  it), its pad token and maximum length, emitting exactly the model's inputs (``token_type_ids``
  only where the model takes them);
* ``MODEL_labels`` for a classifier: softmax and the class names (the model's ``id2label``);
* the ensemble ``NAME`` over them, batching dynamically like the demo's pipelines; the model keeps
  the queue policy and the golden self-check it was exported with.

Everything is read from the repository and the folder the model was exported from (recorded in
its ``metadata.json``); ``--tokenizer DIR`` points elsewhere when that folder has moved.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tritonstack.converters.errors import InvalidSpec, UnsupportedModel
from tritonstack.converters.repository import existing_versions, read_config
from tritonstack.converters.spec import MODEL_NAME
from tritonstack.ensembles.pipelines import TEXT_TASKS, TOKEN_NAMES, TextModel, text_pipeline
from tritonstack.ensembles.writer import write_ensemble, write_python_step

# Longer than any encoder's position table: a tokenizer config's "no limit" sentinel.
_NO_LIMIT = 100_000


@dataclasses.dataclass(frozen=True)
class AddSpec:
    """``python -m tritonstack.ensembles add`` as data, validated on construction."""

    name: str
    model: str
    repository: Path = Path("model_repository")
    task: str | None = None  # None: from the export (a one-logit classifier is a reranker)
    tokenizer: Path | None = None  # None: the folder the model was exported from
    max_length: int | None = None  # None: the model's own (sentence-transformers, tokenizer config)

    def __post_init__(self) -> None:
        for flag, value in (("NAME", self.name), ("--model", self.model)):
            if not MODEL_NAME.fullmatch(value or ""):
                raise InvalidSpec(f"{flag} {value!r}: a Triton model name is 1-100 ASCII letters, digits, "
                                  "'_' or '-', starting with a letter or digit")
        if self.name == self.model:
            raise InvalidSpec(f"NAME {self.name!r} is the exported model's own name; give the pipeline "
                              f"another (e.g. {self.model}_text)")
        if self.task is not None and self.task not in TEXT_TASKS:
            raise InvalidSpec(f"--task {self.task!r}: choose one of {', '.join(TEXT_TASKS)}")
        if self.max_length is not None and self.max_length < 2:
            raise InvalidSpec(f"--max-length must be >= 2 tokens, got {self.max_length}")


@dataclasses.dataclass(frozen=True)
class AddReport:
    ensemble: str
    task: str
    written: tuple[str, ...]
    model: TextModel


def add(spec: AddSpec) -> AddReport:
    """Write the tokenizer (and labels) step and the ensemble for ``spec.model``.

    Raises:
        InvalidSpec / UnsupportedModel (exit 2): the model is missing, not a text model, the task
        does not fit it, its tokenizer cannot be found or is not a fast one, a name is taken.
    """
    repository = Path(spec.repository)
    model_dir = repository / spec.model
    config = read_config(model_dir) if model_dir.is_dir() else None
    if config is None or not existing_versions(model_dir):
        raise InvalidSpec(f"no exported model {spec.model!r} in {repository}; export it first: python -m "
                          f"tritonstack.converters export DIR --name {spec.model} --model-repository {repository}")
    metadata = _metadata(model_dir)
    task = _task(spec, metadata, config)
    inputs = tuple(i.name for i in config.input)
    if not inputs or any(name not in TOKEN_NAMES for name in inputs):
        raise UnsupportedModel(f"model {spec.model!r} takes {list(inputs)}, not token ids; `add` serves "
                               "text encoders exported from Hugging Face folders")
    output = config.output[0]
    folder = spec.tokenizer or _source_folder(metadata, spec.model)
    tokenizer = fast_tokenizer(folder)
    max_length = _max_length(spec, folder, tokenizer, config)
    text_model = TextModel(
        name=spec.model, task=task, inputs=inputs, output=output.name, output_dims=tuple(output.dims),
        max_batch_size=config.max_batch_size, max_length=max_length, pad_token=tokenizer.pad_token,
        labels=_labels(folder, int(output.dims[-1])) if task == "text-classification" else ())
    steps, ensemble = text_pipeline(spec.name, text_model)
    check_names_free(repository, ensemble.name, [s.name for s in steps])
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_file = Path(tmp) / "tokenizer.json"
        backend = tokenizer.backend_tokenizer
        backend.no_padding()  # padding and truncation are set at load from the step's parameters
        backend.no_truncation()
        tokenizer_file.write_text(backend.to_str())
        for step in steps:
            write_python_step(repository, step,
                              {"tokenizer.json": tokenizer_file} if step.adapter == "tokenizer" else None)
    write_ensemble(repository, ensemble)
    return AddReport(ensemble.name, task, (*(s.name for s in steps), ensemble.name), text_model)


def _metadata(model_dir: Path) -> dict:
    latest = model_dir / str(existing_versions(model_dir)[-1]) / "metadata.json"
    try:
        return json.loads(latest.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # exported elsewhere: the task and tokenizer must then be given


def _task(spec: AddSpec, metadata: dict, config) -> str:
    exported = metadata.get("task")
    logits = int(config.output[0].dims[-1]) if config.output and config.output[0].dims else 0
    natural = ("rerank" if exported == "text-classification" and logits == 1 else exported)
    if spec.task is None:
        if natural not in TEXT_TASKS:
            raise InvalidSpec(f"model {spec.model!r} records no text task (metadata.json task "
                              f"{exported!r}); pass --task {' | '.join(TEXT_TASKS)}")
        return natural
    if exported == "feature-extraction" and spec.task != "feature-extraction":
        raise UnsupportedModel(f"model {spec.model!r} was exported for feature-extraction (it outputs "
                               f"embeddings); --task {spec.task} needs an export of a model with a "
                               "sequence-classification head")
    if exported == "text-classification" and spec.task == "feature-extraction":
        raise UnsupportedModel(f"model {spec.model!r} was exported for text-classification (it outputs "
                               "logits); for embeddings export the base encoder (--task feature-extraction)")
    if spec.task == "rerank" and logits != 1:
        raise UnsupportedModel(f"model {spec.model!r} outputs {logits} logits; a reranker (cross-encoder) "
                               "has one, so serve this one with --task text-classification")
    return spec.task


def _source_folder(metadata: dict, model: str) -> Path:
    source = (metadata.get("source") or {}).get("source")
    if not source or not Path(source).is_dir():
        raise InvalidSpec(f"the folder model {model!r} was exported from ({source or 'not recorded'}) "
                          "is not here; pass --tokenizer DIR (the model's Hugging Face folder)")
    return Path(source)


def fast_tokenizer(folder: Path):
    """The fast tokenizer of HF ``folder``, with a pad token; refused (exit 2) otherwise."""
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise InvalidSpec(f"--tokenizer {folder} is not a folder; pass the model's Hugging Face folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        raise UnsupportedModel(f"no tokenizer could be loaded from {folder} ({str(exc).splitlines()[0]}); "
                               "the folder needs tokenizer.json or the files of a fast tokenizer") from None
    if not tokenizer.is_fast:
        raise UnsupportedModel(f"{folder} has only a slow (Python) tokenizer; save a fast one there "
                               "(AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(DIR))")
    if tokenizer.pad_token is None:
        raise UnsupportedModel(f"the tokenizer in {folder} has no pad token, which batching needs; "
                               "set tokenizer.pad_token and save it again")
    return tokenizer


def _max_length(spec: AddSpec, folder: Path, tokenizer, config) -> int:
    """The model's own maximum, never past its position table (the runner's axis limit)."""
    from tritonstack.serving.requests import Limits

    params = {key: value.string_value for key, value in config.parameters.items()}
    axis_limits = Limits.from_parameters(params).axis_limits  # what the runner itself enforces
    ceiling = min(axis_limits.values()) if axis_limits else None
    if spec.max_length is not None:
        if ceiling is not None and spec.max_length > ceiling:
            raise InvalidSpec(f"--max-length {spec.max_length} is past model {spec.model!r}'s "
                              f"{ceiling} positions; choose at most {ceiling}")
        return spec.max_length
    own = None
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        own = json.loads(st_config.read_text()).get("max_seq_length")
    if not own and 0 < tokenizer.model_max_length < _NO_LIMIT:
        own = tokenizer.model_max_length
    candidates = [int(n) for n in (own, ceiling) if n]
    return min(candidates) if candidates else 512


def _labels(folder: Path, count: int) -> tuple[str, ...]:
    config_file = folder / "config.json"
    id2label = json.loads(config_file.read_text()).get("id2label") if config_file.is_file() else None
    labels = {int(k): str(v) for k, v in (id2label or {}).items()}
    return tuple(labels.get(i, f"LABEL_{i}") for i in range(count))


def check_names_free(repository: Path, ensemble: str, steps: Sequence[str], models: Sequence[str] = ()) -> None:
    """Never overwrite another model: only our own ensemble and Python steps are replaced, and an
    exported model (``models``) only gains a version.

    Raises:
        InvalidSpec (exit 2): one of the names holds another kind of model in ``repository``.
    """
    kinds = [(ensemble, "ensemble"), *((s, "python") for s in steps), *((m, "export") for m in models)]
    for name, kind in kinds:
        folder = repository / name
        config = read_config(folder) if folder.is_dir() else None
        if config is None:
            continue
        exported = any(folder.glob("*/model.onnx")) or any(folder.glob("*/model.plan"))
        own = {"ensemble": config.platform == "ensemble",
               "python": config.backend == "python" and not (folder / "1" / "model.onnx").exists(),
               "export": exported}[kind]
        if not own:
            what = config.platform or config.backend
            raise InvalidSpec(f"{folder} already holds another model ({what}); choose another "
                              "NAME or remove that model first")
