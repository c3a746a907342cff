"""Stand-in Python-backend models for the client tests, with the demo pipelines' exact IO.

* ``embed``: TEXT BYTES [1] -> EMBEDDING FP32 [384], a deterministic unit vector per text
  (seeded by the text's SHA-256), max_batch_size 64.
* ``classify_digit``: IMAGE FP32 [8, 8] -> LABEL INT64 [1], PROBABILITIES FP32 [10]: softmax of
  the first ten pixels, so an image whose pixel k is bright is classified as k. max_batch 256.
* ``slow``: add_one that sleeps, for deadlines; ``tiny_queue``: a slow add_one whose queue
  holds one request, so Triton sheds the rest; ``fails``: answers every request with an error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tests.helpers import repos

EMBED_MODEL = '''
import hashlib
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            rows = []
            for text in texts:
                seed = int.from_bytes(hashlib.sha256(bytes(text)).digest()[:8], "little")
                v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
                rows.append(v / np.linalg.norm(v))
            out = pb_utils.Tensor("EMBEDDING", np.stack(rows).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
'''

CLASSIFY_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            logits = images.reshape(len(images), 64)[:, :10].astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            labels = probs.argmax(axis=1).astype(np.int64).reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("LABEL", labels), pb_utils.Tensor("PROBABILITIES", probs)]))
        return responses
'''

FAILS_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("stand-in model refuses"))
                for _ in requests]
'''


def write_embed(repo: Path) -> Path:
    return repos.write_python_model(repo, "embed", EMBED_MODEL, """\
        name: "embed"
        backend: "python"
        max_batch_size: 64
        input [{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
        output [{ name: "EMBEDDING", data_type: TYPE_FP32, dims: [384] }]
        dynamic_batching { max_queue_delay_microseconds: 1000 }
        """)


def write_classify_digit(repo: Path) -> Path:
    return repos.write_python_model(repo, "classify_digit", CLASSIFY_MODEL, """\
        name: "classify_digit"
        backend: "python"
        max_batch_size: 256
        input [{ name: "IMAGE", data_type: TYPE_FP32, dims: [8, 8] }]
        output [{ name: "LABEL", data_type: TYPE_INT64, dims: [1] },
                { name: "PROBABILITIES", data_type: TYPE_FP32, dims: [10] }]
        dynamic_batching { max_queue_delay_microseconds: 1000 }
        """)


def write_fails(repo: Path) -> Path:
    folder = repos.write_add_one(repo, "fails")
    (folder / "1" / "model.py").write_text(FAILS_MODEL)
    return folder


def write_client_repo(repo: Path) -> Path:
    """Every model the client tests use, in one repository."""
    repos.write_add_one(repo, "add_one", max_batch_size=8, queue_delay_us=500)
    repos.write_add_one(repo, "slow", delay_s=1.0)
    repos.write_add_one(repo, "tiny_queue", delay_s=0.5, max_batch_size=1, queue_delay_us=0)
    config = (repo / "tiny_queue" / "config.pbtxt").read_text().replace(
        "dynamic_batching { max_queue_delay_microseconds: 0 }",
        "dynamic_batching { max_queue_delay_microseconds: 0 "
        "default_queue_policy { max_queue_size: 1 } }")
    (repo / "tiny_queue" / "config.pbtxt").write_text(config)
    write_embed(repo)
    write_classify_digit(repo)
    write_fails(repo)
    return repo


def expected_embedding(text: str) -> np.ndarray:
    """What the stand-in ``embed`` returns for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def digit_image(label: int) -> np.ndarray:
    """An 8x8 image, scikit-learn digits scale, that the stand-in classifies as ``label``."""
    image = np.zeros((8, 8), dtype=np.float32)
    image.flat[label] = 16.0
    return image
