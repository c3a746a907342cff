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


def sentences():
    """The demo's 1,000 evaluation sentences, tokenized one by one for MiniLM."""
    from tritonstack.demo.data import text_corpus
    from tritonstack.ensembles.build import MAX_LENGTH, minilm_tokenizer_file
    from tritonstack.serving.text import encode, load_tokenizer

    tokenizer = load_tokenizer(minilm_tokenizer_file(), MAX_LENGTH)
    names = ("input_ids", "attention_mask", "token_type_ids")
    return [{n: getattr(e, n) for n in names} for e in (encode(tokenizer, [t]) for t in text_corpus().evaluation if t)]


def arrival_batches(rows: list[dict[str, np.ndarray]], batch: int) -> list[dict[str, np.ndarray]]:
    """Batches in the sentences' order, each padded to its longest: as a server forms them."""
    from tritonstack.serving.batching import concat_padded
    from tritonstack.serving.requests import TensorInfo

    infos = [TensorInfo(n, np.dtype(np.int64), ("sequence_length",)) for n in rows[0]]
    return [concat_padded(rows[i:i + batch], infos) for i in range(0, len(rows), batch)]


def on_sentences(run, reference: np.ndarray | None, rows) -> dict[str, object]:
    """Agreement with FP32 ORT (the INT8 gate's metrics) on batches of 8, and CPU µs per row on
    arrival-order batches of 4 and 8 (every shape seen once before timing)."""
    from tritonstack.converters.metrics import embedding_agreement

    out: dict[str, object] = {}
    for batch in (4, 8):
        feeds = arrival_batches(rows, batch)
        results = [run(f) for f in feeds]
        if sum(len(r) for r in results) != len(rows):
            return {"wrong": f"{sum(len(r) for r in results)} output rows for {len(rows)} sentences"}
        cpu = time.process_time()
        for f in feeds:
            run(f)
        out[f"arrival_b{batch}_cpu_us_per_row"] = round(1e6 * (time.process_time() - cpu) / len(rows))
        if batch == 8 and reference is not None:
            agreement = embedding_agreement(reference, np.concatenate(results))
            out["mean_cosine"], out["recall_at_10"] = agreement.mean_cosine, agreement.recall_at_10
        if batch == 8:
            out["embeddings"] = np.concatenate(results)
    return out


def ort_engine(path: Path):
    """A one-thread session as the python-ort runner serves it on this CPU."""
    from tritonstack.converters.steps.base import ort_session
    from tritonstack.serving.cpu import int8_kernel

    session = ort_session(path, 1, exact_int8=int8_kernel() != "exact")
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
    rows = sentences()
    print(f"\nThe {len(rows)} evaluation sentences: agreement with ORT FP32 (batches of 8) and CPU µs per "
          "row in arrival-order batches padded to their longest")
    print("| engine | mean cosine | recall@10 | arrival b4 | arrival b8 |")
    print("|---|---:|---:|---:|---:|")
    reference = None
    for name in ["onnxruntime fp32", *[n for n in engines if n != "onnxruntime fp32"]]:
        if isinstance(results.get(name), str):
            continue
        figures = on_sentences(engines[name](), reference, rows)
        if name == "onnxruntime fp32":
            reference = figures.get("embeddings")
        figures.pop("embeddings", None)
        if isinstance(results.get(name), dict):
            results[name]["sentences"] = figures
        if "wrong" in figures:
            print(f"| {name} | wrong: {figures['wrong']} | | | |")
            continue
        cos, recall = figures.get("mean_cosine"), figures.get("recall_at_10")
        print(f"| {name} | {cos if cos is None else f'{cos:.5f}'} | {recall if recall is None else f'{recall:.3f}'} | "
              f"{figures['arrival_b4_cpu_us_per_row']:,} | {figures['arrival_b8_cpu_us_per_row']:,} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"cpu": describe_cpu(), "int8_kernel": int8_kernel(),
                                        "amx_permitted": {"before": before, "after": after},
                                        "engines": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
