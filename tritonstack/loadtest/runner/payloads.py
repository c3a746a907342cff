"""Request payloads, built and serialized once before the load starts.

Each traffic entry becomes a pool of serialized ``ModelInferRequest`` messages (raw tensor bytes
in ``raw_input_contents``). The Locust user sends those bytes as they are, through a gRPC method
whose request serializer is the identity, so the generator spends no CPU per request on building
or serializing protobufs. Demo pipelines draw realistic inputs: ``embed`` texts from the
evaluation corpus (its natural length spread), ``classify_digit`` images from the digits test
split; other models get the fixed tensors their campaign describes. A traffic entry's ``shift``
(campaign.SHIFTS) moves those inputs away from what the models were exported on, for drift
campaigns.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import numpy as np

from tritonstack.loadtest.campaign.spec import InputSpec, Traffic
from tritonstack.loadtest.errors import CampaignError

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


def serialize_bytes(items: Sequence[bytes]) -> bytes:
    """Triton's raw BYTES layout: each element as a little-endian uint32 length, then the bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def infer_request(model: str, version: str, tensors: Sequence[tuple[str, str, Sequence[int], bytes]],
                  outputs: Sequence[str] = ()) -> bytes:
    """A serialized ModelInferRequest with raw input contents (name, datatype, shape, raw bytes)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=list(shape))
        request.raw_input_contents.append(raw)
    for name in outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


def _fixed(traffic: Traffic, rng: np.random.Generator) -> list[bytes]:
    def tensor(spec: InputSpec) -> tuple[str, str, Sequence[int], bytes]:
        count = int(np.prod(spec.shape))
        if spec.datatype == "BYTES":
            items = [str(spec.value).encode()] * count
            if spec.random:
                items = [f"{spec.value} {rng.integers(1_000_000)}".encode() for _ in range(count)]
            return spec.name, spec.datatype, spec.shape, serialize_bytes(items)
        dtype = _NUMPY[spec.datatype]
        if spec.random:
            array = (rng.random(spec.shape) * float(spec.value)).astype(dtype)
        else:
            array = np.full(spec.shape, spec.value, dtype=dtype)
        return spec.name, spec.datatype, spec.shape, array.tobytes()

    count = traffic.pool if any(s.random for s in traffic.inputs) else 1
    return [infer_request(traffic.model, traffic.version, [tensor(s) for s in traffic.inputs],
                          traffic.outputs) for _ in range(count)]


def _digits(traffic: Traffic, rng: random.Random) -> list[bytes]:
    images = np.asarray(_data().digits_split().x_test_raw, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise CampaignError(f"digits test split has shape {images.shape}, expected [n, 8, 8]")
    if traffic.shift == "inverted":
        images = 16.0 - images
    elif traffic.shift == "noisy":
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, 4.0, images.shape)
        images = np.clip(images + noise, 0.0, 16.0).astype(np.float32)
    pool = []
    for _ in range(traffic.pool):
        index = [rng.randrange(len(images)) for _ in range(traffic.batch)]
        batch = np.ascontiguousarray(images[index])
        pool.append(infer_request(traffic.model, traffic.version,
                                  [("IMAGE", "FP32", batch.shape, batch.tobytes())], traffic.outputs))
    return pool


def _texts(traffic: Traffic, rng: random.Random) -> list[bytes]:
    texts = [t for t in _data().text_corpus().evaluation if t]
    if not texts:
        raise CampaignError("the evaluation text corpus is empty")
    if traffic.zipf is not None:
        return _zipf_texts(traffic, texts, rng)
    joined = 6 if traffic.shift == "long-texts" else 1
    pool = []
    for _ in range(traffic.pool):
        batch = [" ".join(rng.choice(texts) for _ in range(joined)).encode("utf-8")
                 for _ in range(traffic.batch)]
        pool.append(infer_request(traffic.model, traffic.version,
                                  [("TEXT", "BYTES", (len(batch), 1), serialize_bytes(batch))],
                                  traffic.outputs))
    return pool


def zipf_queries(texts: list[str], distinct: int) -> list[str]:
    """``distinct`` different queries made from the corpus: its sentences, then pairs of them."""
    n = len(texts)
    return [texts[i] if i < n else f"{texts[i % n]} {texts[(i // n * 7919 + i) % n]}"
            for i in range(distinct)]


def _zipf_texts(traffic: Traffic, texts: list[str], rng: random.Random) -> list[bytes]:
    """The pool's rows drawn with P(query of rank r) proportional to r^-zipf."""
    queries = zipf_queries(texts, traffic.distinct)
    draws = np.random.default_rng(rng.randrange(2**32)).choice(
        len(queries), size=(traffic.pool, traffic.batch), p=_zipf_weights(len(queries), traffic.zipf or 1.0))
    return [infer_request(traffic.model, traffic.version,
                          [("TEXT", "BYTES", (traffic.batch, 1),
                            serialize_bytes([queries[i].encode("utf-8") for i in row]))], traffic.outputs)
            for row in draws]


def _zipf_weights(n: int, s: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -s
    return weights / weights.sum()


def _data():  # noqa: ANN202 - demo.data is optional: stand-in models don't need it
    try:
        from tritonstack.demo import data
    except ImportError as exc:
        raise CampaignError(
            f"demo pipeline inputs come from tritonstack.demo.data, which cannot be imported ({exc}); "
            "install the project (pip install -e .) or target a model with fixed [inputs]"
        ) from None
    return data


def build_pool(traffic: Traffic, seed: int = 0) -> list[bytes]:
    """The serialized requests one traffic entry cycles through (shuffled, seeded)."""
    if traffic.pipeline == "classify_digit":
        pool = _digits(traffic, random.Random(seed))
    elif traffic.pipeline == "embed":
        pool = _texts(traffic, random.Random(seed))
    else:
        pool = _fixed(traffic, np.random.default_rng(seed))
    if traffic.keys:
        pool = _with_keys(pool, traffic.keys, traffic.key_parameter)
    return pool


def _with_keys(pool: list[bytes], keys: int, parameter: str) -> list[bytes]:
    """Row i is user ``i % keys``'s request: the same user always sends the same key."""
    from tritonclient.grpc import service_pb2

    keyed = []
    for i, raw in enumerate(pool):
        request = service_pb2.ModelInferRequest.FromString(raw)
        request.parameters[parameter].string_param = f"user-{i % keys}"
        keyed.append(request.SerializeToString())
    return keyed


def mix_schedule(weights: Sequence[float], length: int = 1000, seed: int = 0) -> list[int]:
    """A shuffled sequence of traffic indices in proportion to ``weights`` (cycled by each user)."""
    total = sum(weights)
    counts = [max(1, round(length * w / total)) for w in weights]
    schedule = [i for i, n in enumerate(counts) for _ in range(n)]
    random.Random(seed).shuffle(schedule)
    return schedule
