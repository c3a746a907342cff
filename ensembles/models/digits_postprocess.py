"""logits (FP32 [n, 10]) -> LABEL (INT64 [n, 1]) and PROBABILITIES (FP32 [n, 10])."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from ensembles.models.batching import input_array, respond, split_rows
from ensembles.processing.digits import postprocess


def _compute(batches: list[np.ndarray]) -> list[list[object]]:
    labels, probabilities = postprocess(np.concatenate(batches))
    sizes = [len(b) for b in batches]
    return [[pb_utils.Tensor("LABEL", lab), pb_utils.Tensor("PROBABILITIES", prob)]
            for lab, prob in zip(split_rows(labels, sizes), split_rows(probabilities, sizes), strict=True)]


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return respond(requests, lambda r: input_array(r, "logits"), _compute)
