"""A production Triton client for backend services (gRPC, sync and asyncio).

    from tritonstack.client import Client

    with Client(urls=["127.0.0.1:8001"], timeout_s=2.0) as triton:
        vectors = triton.embed(["a sentence", "another"])     # float32 [2, 384]
        labels, probabilities = triton.classify_digits(images)  # images: [n, 8, 8], 0..16
        outputs = triton.infer("add_one", {"INPUT": x})         # any model: dict in, dict out
        names, probs = triton.classify_texts(["great!"], model="sentiment")  # `ensembles add` pipelines
        scores = triton.rerank("a query", ["passage 1", "passage 2"], model="rerank")

One long-lived channel per replica, round-robin with failover, one deadline per call in
seconds (retries included), retries with backoff only on UNAVAILABLE (and, opted in, on shed
requests), client-side shape/dtype checks, and one error type: ``ClientError`` with a ``Status``.
"""

from tritonstack.client._aio import AsyncClient
from tritonstack.client._base import ReplicaHealth
from tritonstack.client._config import ClientConfig, TlsConfig
from tritonstack.client._errors import ClientError, Status, is_shed
from tritonstack.client._pipelines import DigitPredictions, TextPredictions
from tritonstack.client._sync import Client
from tritonstack.client._tensors import ModelInfo, ModelState, TensorSpec

__all__ = [
    "AsyncClient",
    "Client",
    "ClientConfig",
    "ClientError",
    "DigitPredictions",
    "ModelInfo",
    "ModelState",
    "ReplicaHealth",
    "Status",
    "TensorSpec",
    "TextPredictions",
    "TlsConfig",
    "is_shed",
]
