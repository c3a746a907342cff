"""In-process engines on this CPU for an exported encoder: the per-CPU figures of issue #35.

    flock /tmp/bench.lock python scripts/bench_engines.py [--model-repository model_repository] [--model minilm]

For the served INT8 file and its FP32 twin (``NAME_fp32``), one thread, fixed inputs: CPU µs per
row and rows/s at batch 1, 8 and 32 with 16 and 64 tokens, in ONNX Runtime as the runner serves
it, and in OpenVINO (FP32 and BF16 hints) when ``openvino`` is importable. Also which INT8 kernel
ORT uses here (the runner's probe) and whether ONNX Runtime asked Linux for AMX tile state
(``arch_prctl(ARCH_GET_XCOMP_PERM)``: MLAS asks for it at import only to run its AMX u8s8 GEMM).
Each engine's output rows are counted: an engine that returns the wrong number of rows is
reported as wrong, not timed. A measurement, not a test (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path

import numpy as np

SHAPES = ((1, 16), (8, 16), (32, 16), (1, 64), (8, 64), (32, 64))
_ARCH_GET_XCOMP_PERM, _XTILEDATA, _SYS_ARCH_PRCTL = 0x1022, 18, 158


def amx_permitted() -> bool | None:
    """Whether this process may use AMX tiles (None where the kernel cannot say)."""
    value = ctypes.c_uint64(0)
    try:
        if ctypes.CDLL(None, use_errno=True).syscall(_SYS_ARCH_PRCTL, _ARCH_GET_XCOMP_PERM, ctypes.byref(value)):
            return None
    except (OSError, AttributeError):
        return None
    return bool(value.value >> _XTILEDATA & 1)


def feed(batch: int, tokens: int) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(0).integers(1000, 20000, (batch, tokens)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones((batch, tokens), np.int64),
            "token_type_ids": np.zeros((batch, tokens), np.int64)}


def measure(run, batch: int, tokens: int, seconds: float) -> dict[str, float] | str:
    f = feed(batch, tokens)
    rows = len(run(f))
    if rows != batch:
        return f"wrong: {rows} output rows for {batch} inputs"
    for _ in range(3):
        run(f)
    n, cpu, start = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds or n < 5:
        run(f)
        n += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"rows_per_s": round(n * batch / wall), "cpu_us_per_row": round(1e6 * cpu / (n * batch))}


def ort_engine(path: Path):
    import onnxruntime as ort

    from tritonstack.serving.cpu import int8_config_entries

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    for key, value in int8_config_entries().items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda f: session.run(None, f)[0]


def openvino_engine(path: Path, hint: str):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False,
        "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda f: np.array(request.infer(f)[output])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per shape (default 2)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    before = amx_permitted()
    import onnxruntime  # noqa: F401  (MLAS sets up its kernels at import)

    after = amx_permitted()
    from tritonstack.converters.repository import existing_versions
    from tritonstack.serving.cpu import describe_cpu, int8_kernel

    def latest(name: str) -> Path:
        folder = args.model_repository / name
        return folder / str(existing_versions(folder)[-1]) / "model.onnx"

    int8, fp32 = latest(args.model), latest(f"{args.model}_fp32")
    engines = {"onnxruntime int8 (served)": lambda: ort_engine(int8), "onnxruntime fp32": lambda: ort_engine(fp32)}
    try:
        import openvino

        for hint in ("f32", "bf16"):
            engines[f"openvino {openvino.__version__.split('-')[0]} int8 file, {hint}"] = \
                lambda h=hint: openvino_engine(int8, h)
            engines[f"openvino fp32 file, {hint}"] = lambda h=hint: openvino_engine(fp32, h)
    except ImportError:
        pass
    print(f"CPU: {describe_cpu()}; ORT int8 kernel: {int8_kernel()}; AMX tile state permitted before "
          f"onnxruntime's import: {before}, after: {after}")
    results = {}
    print("| engine | " + " | ".join(f"b{b} x {t}" for b, t in SHAPES) + " |  (µs CPU per row, rows/s)")
    print("|---|" + "---:|" * len(SHAPES))
    for name, make in engines.items():
        try:
            run = make()
        except Exception as exc:  # an engine that cannot compile the file is a result too
            results[name] = f"failed: {str(exc).splitlines()[0][:160]}"
            print(f"| {name} | {results[name]} |")
            continue
        row = {f"b{b}x{t}": measure(run, b, t, args.duration) for b, t in SHAPES}
        results[name] = row
        print(f"| {name} | " + " | ".join(v if isinstance(v, str) else f"{v['cpu_us_per_row']:,} ({v['rows_per_s']:,})"
                                          for v in row.values()) + " |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"cpu": describe_cpu(), "int8_kernel": int8_kernel(),
                                        "amx_permitted": {"before": before, "after": after},
                                        "engines": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
