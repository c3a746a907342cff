"""logits (FP32 [n, k]) -> LABEL (BYTES [n, 1], the class name from labels.txt, i.e. the model's
id2label) and PROBABILITIES (FP32 [n, k], softmax)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the serving package this version carries
from serving.classes import label_names, softmax_argmax  # noqa: E402
from serving.steps import input_array, respond, split_rows  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        text = (Path(args["model_repository"]) / "labels.txt").read_text(encoding="utf-8")
        self.labels = tuple(text.splitlines())

    def _compute(self, batches: list[np.ndarray]) -> list[list[object]]:
        indices, probabilities = softmax_argmax(np.concatenate(batches))
        names = label_names(indices, self.labels)
        sizes = [len(b) for b in batches]
        return [[pb_utils.Tensor("LABEL", lab), pb_utils.Tensor("PROBABILITIES", prob)]
                for lab, prob in zip(split_rows(names, sizes), split_rows(probabilities, sizes), strict=True)]

    def execute(self, requests: list) -> list:
        return respond(requests, lambda r: input_array(r, "logits"), self._compute)
