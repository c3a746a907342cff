"""IMAGE (FP32 [n, 8, 8], 0..16) -> image (FP32 [n, 1, 8, 8], 0..1), validated per request."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from ensembles.models.batching import Quality, input_array, respond, split_rows
from ensembles.processing.digits import preprocess


def _compute(images: list[np.ndarray]) -> list[list[object]]:
    batch = np.concatenate(images)
    return [[pb_utils.Tensor("image", part)]
            for part in split_rows(batch, [len(x) for x in images])]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.quality = Quality(args["model_name"])

    def execute(self, requests: list) -> list:
        # Validation is per request (one bad image fails only its own request); it also scales.
        return respond(requests, lambda r: preprocess(input_array(r, "IMAGE")), _compute, self.quality)
