"""In-process ONNX Runtime throughput of an exported version (not a test: a measurement).

Run it under ``flock /tmp/bench.lock`` so that no two benchmarks share the cores::

    flock /tmp/bench.lock python -m tritonstack.converters bench model_repository/minilm model_repository/minilm_fp32
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tritonstack.converters.errors import InvalidSpec
from tritonstack.converters.repository import existing_versions
from tritonstack.converters.steps.base import ort_session

_NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
          "tensor(float16)": np.float16}


def _inputs(session, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for i in session.get_inputs():
        shape = [batch] + [d if isinstance(d, int) and d > 0 else seq_len for d in i.shape[1:]]
        dtype = _NUMPY.get(i.type, np.float32)
        if i.name == "input_ids":
            feed[i.name] = rng.integers(1000, 20000, size=shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            feed[i.name] = (np.ones(shape) if "mask" in i.name else np.zeros(shape)).astype(dtype)
        else:
            feed[i.name] = rng.uniform(0, 1, size=shape).astype(dtype)
    return feed


def bench_model(folder: Path, *, batches: tuple[int, ...] = (1, 32), seq_len: int = 16, threads: int = 2,
                seconds: float = 3.0) -> list[dict[str, object]]:
    """Rows/s and ms per batch of the latest version's model.onnx at each batch size."""
    folder = Path(folder)
    versions = existing_versions(folder)
    if not versions:
        raise InvalidSpec(f"{folder} has no numeric version folder; pass REPO/NAME of an exported model")
    path = folder / str(versions[-1]) / "model.onnx"
    if not path.exists():
        raise InvalidSpec(f"{path} not found (bench measures ONNX Runtime models only)")
    from tritonstack.serving.cpu import int8_kernel

    # as the python-ort runner serves it: exact int8 kernels where this CPU's would saturate
    session = ort_session(path, threads, exact_int8=int8_kernel() != "exact")
    rows = []
    for batch in batches:
        feed = _inputs(session, batch, seq_len)
        for _ in range(3):
            session.run(None, feed)
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or n < 5:
            session.run(None, feed)
            n += 1
        rows.append({"model": folder.name, "version": versions[-1], "size_mb": path.stat().st_size / 1e6,
                     "batch": batch, "seq_len": seq_len, "threads": threads,
                     "rows_per_s": n * batch / elapsed, "ms_per_batch": 1000 * elapsed / n})
    return rows
