"""What each kind of source contributes to an export, in one place.

A :class:`Family` answers the questions the pipeline's steps ask of a source: the task and the
kind of output (embedding or classification), the reference the ONNX graph must match (the
model in torch), parity inputs, calibration, evaluation and golden data, and the input limits
the python-ort runner enforces. ``family_for`` picks the family of a resolved source; a new
family (a new architecture's specifics, a new source kind) is a new ``Family`` registered
there, and no step changes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tritonstack.converters import feeds as feeds_mod
from tritonstack.converters.sources.hf import HFSource
from tritonstack.converters.sources.resolve import TorchSource
from tritonstack.converters.spec import EMBEDDING_OUTPUT

Feed = dict[str, np.ndarray]
Reference = Callable[[Feed], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Family:
    """A source's export specifics (see the module docstring)."""

    name: str
    task: str
    kind: str  # "embedding" | "classification" | "score" (one logit: a cross-encoder reranker)
    reference: Reference
    parity_cases: Sequence[Feed]
    calibration: Callable[[str, int | None], Sequence[Feed]]  # (mode, size) -> fixed-shape feeds
    evaluation: Callable[[int | None], tuple[Sequence[Feed], np.ndarray | None]] | None
    golden_feed: Callable[[int | None], Feed]
    limits: Callable[[Path], dict[str, dict]]  # served ONNX file -> value_ranges / axis_limits
    fusable_as: str | None = None  # ORT transformer optimizer model type
    default_calibration: str = "source"


def hf_config(source: HFSource) -> dict:
    return json.loads((source.folder / "config.json").read_text())


def hf_kind(source: HFSource) -> str:
    """embedding, classification, or score: a head with one logit scores its input (a
    cross-encoder reranker scores a (query, passage) pair), so it is judged by rank, not argmax."""
    if source.task == "feature-extraction":
        return "embedding"
    config = hf_config(source)
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or 2
    return "score" if labels == 1 else "classification"


def _hf_family(source: HFSource) -> Family:
    task = source.task
    vocab = int(hf_config(source).get("vocab_size", 1000))
    kind = hf_kind(source)
    pairs = kind == "score"
    longest = hf_max_tokens(source)
    return Family(
        name="huggingface", task=task, kind=kind,
        reference=_hf_reference(source),
        parity_cases=feeds_mod.hf_parity_cases(vocab, longest=longest),
        calibration=lambda _mode, size: feeds_mod.text_calibration(source, size, pairs=pairs, longest=longest),
        evaluation=lambda size: feeds_mod.text_evaluation(source, size, pairs=pairs, longest=longest),
        golden_feed=lambda size: feeds_mod.text_evaluation(source, size, pairs=pairs, longest=longest)[0][0],
        limits=lambda path: text_limits(source, path),
        fusable_as=source.fusable_as or None,
        default_calibration="corpus",
    )


def _torch_family(source: TorchSource) -> Family:
    spec = source.spec
    task = spec.task
    parity_cases = feeds_mod.torch_parity_cases(spec)
    has_eval = spec.evaluation_data is not None
    return Family(
        name="torch", task=task,
        kind="classification" if task.endswith("classification") else "embedding",
        reference=_torch_reference(source),
        parity_cases=parity_cases,
        calibration=lambda mode, size: feeds_mod.torch_calibration(spec, mode, size),
        evaluation=(lambda size: feeds_mod.torch_evaluation(spec, size)) if has_eval else None,
        golden_feed=(lambda size: feeds_mod.torch_evaluation(spec, size)[0][0]) if has_eval
        else (lambda _size: parity_cases[-1]),
        limits=lambda _path: {"value_ranges": {i.name: i.valid_range for i in spec.inputs
                                               if i.valid_range is not None}},
    )


def family_for(source: HFSource | TorchSource) -> Family:
    """The family of a resolved source."""
    return _hf_family(source) if isinstance(source, HFSource) else _torch_family(source)


def hf_max_tokens(source: HFSource) -> int | None:
    """The longest token sequence the model can take: its position table, less the positions
    RoBERTa-style models reserve for the padding index. One notion, used by every step that runs
    the model (parity, calibration, accuracy, golden, profile) and by the runner's axis limit."""
    config = hf_config(source)
    longest = config.get("max_position_embeddings")
    if not longest:
        return None
    offset = int(config.get("pad_token_id") or 0) + 1 if config.get("model_type") in (
        "roberta", "xlm-roberta", "camembert", "mpnet") else 0
    return int(longest) - offset


def text_limits(source: HFSource, path: Path) -> dict[str, dict]:
    """Token id ranges and the longest sequence, from the model's config.json (for the runner)."""
    import onnx

    config = hf_config(source)
    ranges = {"attention_mask": (0, 2)}
    if config.get("vocab_size"):
        ranges["input_ids"] = (0, int(config["vocab_size"]))
    if config.get("type_vocab_size"):
        ranges["token_type_ids"] = (0, int(config["type_vocab_size"]))
    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = {i.name: i for i in graph.input}
    ranges = {k: v for k, v in ranges.items() if k in inputs}
    limits = {}
    longest = hf_max_tokens(source)
    ids = inputs.get("input_ids")
    if longest and ids is not None and len(ids.type.tensor_type.shape.dim) > 1:
        axis = ids.type.tensor_type.shape.dim[1].dim_param
        if axis:
            limits[axis] = longest
    return {"value_ranges": ranges, "axis_limits": limits}


def _hf_reference(source: HFSource) -> Reference:
    """The HF model in torch, computing what the ONNX graph computes."""
    import torch

    state: dict[str, object] = {}

    def reference(feed: Feed) -> dict[str, np.ndarray]:
        if "model" not in state:
            import inspect

            from transformers import AutoModel, AutoModelForSequenceClassification

            cls = AutoModel if source.task == "feature-extraction" else AutoModelForSequenceClassification
            state["model"] = cls.from_pretrained(str(source.folder)).eval()
            # the model's own inputs: DistilBERT, RoBERTa and others take no token_type_ids
            state["inputs"] = set(inspect.signature(state["model"].forward).parameters)  # type: ignore[attr-defined]
        model = state["model"]
        tensors = {k: torch.from_numpy(v) for k, v in feed.items() if k in state["inputs"]}  # type: ignore[operator]
        with torch.no_grad():
            out = model(**tensors)  # type: ignore[operator]
        if source.task != "feature-extraction":
            return {"logits": out.logits.numpy()}
        hidden = out.last_hidden_state
        mask = tensors["attention_mask"].unsqueeze(-1).float()
        if source.pooling == "cls":
            pooled = hidden[:, 0]
        elif source.pooling == "max":
            pooled = (hidden - (1 - mask) * 1e9).max(dim=1).values
        else:
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if source.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return {EMBEDDING_OUTPUT: pooled.numpy()}

    return reference


def _torch_reference(source: TorchSource) -> Reference:
    import torch

    def reference(feed: Feed) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in source.spec.order(feed)]
        with torch.no_grad():
            out = source.module(*args)
        outs = out if isinstance(out, tuple | list) else (out,)
        return {name: o.detach().numpy() for name, o in zip(source.spec.output_names, outs, strict=True)}

    return reference
