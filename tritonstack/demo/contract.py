"""The demo pipelines as callers see them: model names, tensors, dtypes and shapes (batch axis
excluded), written once. ``ensembles.pipelines`` builds the served configs from it, and a fast
test holds the generated configs and the client's own constants to it."""

from __future__ import annotations

import dataclasses

EMBED = "embed"
CLASSIFY = "classify_digit"
ENCODER = "minilm"  # the INT8 MiniLM the embed ensemble runs
CLASSIFIER = "digits_cnn"  # the INT8 CNN the classify_digit ensemble runs
EMBED_DIM = 384
DIGIT_SHAPE = (8, 8)
DIGIT_MAX = 16.0  # pixels on scikit-learn's digits scale, 0..16
DIGIT_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # Triton's TYPE_* name
    dims: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Pipeline:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


PIPELINES = (
    Pipeline(EMBED, (Tensor("TEXT", "TYPE_STRING", (1,)),),
             (Tensor("EMBEDDING", "TYPE_FP32", (EMBED_DIM,)),)),
    Pipeline(CLASSIFY, (Tensor("IMAGE", "TYPE_FP32", DIGIT_SHAPE),),
             (Tensor("LABEL", "TYPE_INT64", (1,)), Tensor("PROBABILITIES", "TYPE_FP32", (DIGIT_CLASSES,)))),
)
