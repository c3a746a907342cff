"""``python -m tritonstack.converters export SOURCE --name NAME ...``, ``bench REPO/NAME`` and ``verify REPOSITORY``.

Thin: parse, build an :class:`~converters.spec.ExportSpec`, call :func:`converters.api.export`,
print ``Type: message`` on failure (traceback only with ``--verbose``).

Exit codes (decided here only):

* 0: exported (or benchmarked);
* 1: a check failed (parity, INT8 accuracy gate, portability; ``verify``: a version failed its
  golden check on this machine, or has no golden data) or a step crashed; nothing was written;
* 2: usage or bad input (unknown source, missing weights, unsupported architecture/task, bad option);
* 3: environment (TensorRT asked without a GPU, repository or work folder not writable, disk full);
* 4: internal error (a bug; the traceback with ``--verbose``);
* 130: interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tritonstack.cli import ExitCode, Tool, add_model_repository, exit_codes_epilog, int_in, positive_duration
from tritonstack.converters.spec import ExportSpec, Thresholds

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_ENV, EXIT_INTERNAL, EXIT_INTERRUPTED = (
    ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.USAGE, ExitCode.ENVIRONMENT, ExitCode.INTERNAL, ExitCode.INTERRUPTED)
# In-process bench bounds: a batch or length past these is a typo, not a measurement.
MAX_BENCH_BATCH, MAX_BENCH_SEQ_LEN = 4096, 8192

EPILOG = exit_codes_epilog({
    ExitCode.CHECK_FAILED: "parity, the INT8 gate or a golden check failed, or a step crashed; nothing written",
    ExitCode.ENVIRONMENT: "no GPU for TensorRT, repository not writable, disk full"}) + """

examples:
  python -m tritonstack.converters export minilm --name minilm --precision int8 --precision fp32
  python -m tritonstack.converters export tritonstack.converters.sources.digits:factory --name digits_cnn \\
      --precision int8
  python -m tritonstack.converters export ./my-bert --name mybert --task feature-extraction --target onnxruntime
  python -m tritonstack.converters bench model_repository/minilm --batch 1 --batch 32
  python -m tritonstack.converters verify --model-repository model_repository"""


_DEFAULT_THRESHOLDS = Thresholds()
_THRESHOLD_OPTIONS = (
    ("--parity-atol", "parity_atol", "ONNX vs source, absolute"),
    ("--parity-rtol", "parity_rtol", "ONNX vs source, relative"),
    ("--min-mean-cosine", "min_mean_cosine", "INT8 embeddings, mean cosine to FP32"),
    ("--min-min-cosine", "min_min_cosine", "INT8 embeddings, worst row"),
    ("--min-recall-at-10", "min_recall_at_10", "INT8 embeddings, nearest-neighbour recall@10"),
    ("--max-accuracy-drop", "max_accuracy_drop_points", "INT8 classification, percentage points"),
    ("--min-score-spearman", "min_score_spearman", "INT8 one-logit heads (cross-encoders), rank correlation"),
)


def add_export_options(parser: argparse.ArgumentParser, *, default_precision: str = "fp32") -> None:
    """The export's options past SOURCE, --name, --task and the repository: precisions, INT8,
    batching, target, work folder and the gates' thresholds. ``export`` and ``python -m
    tritonstack.ensembles serve`` take the same; :func:`export_spec` reads them back."""
    parser.set_defaults(default_precision=default_precision)
    parser.add_argument(
        "--precision",
        action="append",
        choices=["fp32", "fp16", "int8"],
        dest="precisions",
        help=f"repeatable; default {default_precision}. The first one gets --name",
    )
    parser.add_argument(
        "--int8-mode",
        choices=["dynamic", "static"],
        default="dynamic",
        help="dynamic: fast CPU form; static: calibrated QDQ, the TensorRT form (default: dynamic)",
    )
    parser.add_argument(
        "--int8-activations",
        choices=["per-token", "per-tensor"],
        default="per-token",
        help="dynamic INT8 of HF transformers: per-token (smoothing + per-token FFN scales, default) "
        "or per-tensor (plain ORT quantize_dynamic: faster, less accurate)",
    )
    parser.add_argument(
        "--int8-weights",
        choices=["u8", "s7", "s8"],
        help="how INT8 weights are stored: s8 (default for python-ort and tensorrt) is fastest on "
        "VNNI/AMX, and the python-ort runner makes AVX2-only CPUs exact on it; u8 (dynamic) and s7 "
        "are exact on every x86 CPU by construction (default for --target onnxruntime); "
        "see docs/converters.md, 'INT8 on every CPU'",
    )
    parser.add_argument(
        "--calibration",
        choices=["corpus", "source", "random"],
        help="static INT8 calibration data (default: corpus for HF, source for factories)",
    )
    parser.add_argument("--calibration-size", type=int, metavar="N", help="calibration rows (default 256 / all)")
    parser.add_argument(
        "--evaluation-size", type=int, metavar="N", help="held-out rows for the INT8 gate (default all)"
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="Triton max_batch_size (default 32)")
    parser.add_argument("--instances", type=int, default=1, help="Triton instance_group count (default 1)")
    parser.add_argument(
        "--preferred-batch-size", type=int, action="append", dest="preferred_batch_sizes", metavar="N",
        help="batch size Triton's batcher aims for; repeat for several (default: max/2 and max)",
    )
    parser.add_argument(
        "--max-queue-delay-us", type=int, default=1000, metavar="US",
        help="how long Triton's batcher may hold a request to fill a preferred batch (default "
             "1000); 0 sends what queued as soon as an instance is free",
    )
    parser.add_argument(
        "--max-queue-size", type=int, default=0, metavar="N",
        help="shed requests (UNAVAILABLE) beyond N queued (default 0 = unbounded); with a queue "
             "policy the batcher delay is 0 (Triton 2.51 starves merged payloads, server#8870)",
    )
    parser.add_argument(
        "--admit-rows", type=int, default=0, metavar="N",
        help="python-ort: compute at most N rows per execution and refuse the batch's oldest "
             "requests past them (UNAVAILABLE, 'overloaded'), before any compute (default 0 = "
             "all); sheds load while Triton keeps prefetching batches, which a queue policy "
             "turns off",
    )
    parser.add_argument(
        "--admit-ms", type=float, default=0.0, metavar="MS",
        help="python-ort: a bound on a served request's time in the model, its queue wait plus "
             "its execution; each instance turns it into rows by its own measured cost of a "
             "row, so it holds on every CPU (default 0 = none; with --admit-rows the smaller "
             "limit wins)",
    )
    parser.add_argument(
        "--queue-timeout-ms", type=float, default=0.0, metavar="MS",
        help="shed requests queued longer than MS (default 0 = no limit); Triton checks it only "
             "when an instance frees, so refusals come up to one execution late",
    )
    parser.add_argument(
        "--intra-op-threads", type=int, default=0, help="ORT threads per instance (default 0 = ORT's)"
    )
    parser.add_argument("--keep", type=int, metavar="N",
                        help="after writing, delete all but the N newest versions of the model "
                        "(default: keep all)")
    parser.add_argument(
        "--target",
        choices=["python-ort", "onnxruntime", "tensorrt"],
        default="python-ort",
        help="python-ort (default; pip Triton), onnxruntime or tensorrt (NGC backends)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--optimize", action="store_true",
                        help="serve the offline ORT-fused graph (BERT-like; off: measured slower at b32)")
    parser.add_argument("--work-dir", type=Path, help="intermediate files + run state (default: a cache folder)")
    parser.add_argument("--fresh", action="store_true", help="ignore the run state of a previous attempt")
    bar = parser.add_argument_group("thresholds (lowering one is explicit and recorded in metadata.json)")
    # The defaults are Thresholds' own (converters.spec), shown here, never restated.
    for option, field, what in _THRESHOLD_OPTIONS:
        bar.add_argument(option, type=float, dest=field, metavar="X",
                         help=f"{what} (default {getattr(_DEFAULT_THRESHOLDS, field)})")


def build_tool() -> Tool:
    tool = Tool(
        "python -m tritonstack.converters",
        "Export Hugging Face / PyTorch models to ONNX, INT8 and TensorRT, check them, and write "
        "Triton model repository versions.",
        epilog=EPILOG,
    )
    ex = tool.command("export", help="export, check and write one model", epilog=EPILOG, json=True)
    ex.add_argument(
        "source",
        metavar="SOURCE",
        help="HF folder (config.json + weights), 'minilm', or package.module:factory",
    )
    ex.add_argument(
        "--name", required=True, help="Triton model name (first precision; others get _<precision>)"
    )
    ex.add_argument(
        "--task",
        choices=["feature-extraction", "text-classification", "image-classification"],
        help="what the model outputs (default: the source's; HF: feature-extraction)",
    )
    add_model_repository(ex)
    ex.add_argument("--model-version", type=int, metavar="N", help="version to write (default: next free)")
    add_export_options(ex)

    be = tool.command("bench", help="in-process ONNX Runtime throughput of exported versions", json=True)
    be.add_argument(
        "models", nargs="+", type=Path, metavar="REPO/NAME", help="model folder(s) in a repository"
    )
    be.add_argument("--batch", type=int_in(1, MAX_BENCH_BATCH), action="append", dest="batches", metavar="N",
                    help=f"rows a run, 1..{MAX_BENCH_BATCH}; repeatable (default 1 and 32)")
    be.add_argument("--seq-len", type=int_in(1, MAX_BENCH_SEQ_LEN), default=16, metavar="N",
                    help="length of variable axes (default 16)")
    be.add_argument("--threads", type=int_in(0, 256), default=2, metavar="N",
                    help="ORT intra-op threads (default 2; 0 = ORT's)")
    be.add_argument("--duration", type=positive_duration, default=3.0, metavar="DURATION",
                    help="time per measurement (default 3s)")
    ve = tool.command(
        "verify", json=True,
        help="re-check every ONNX version against its golden data on this machine",
        description="Run each ONNX version's golden inputs on this CPU, as the python-ort runner "
        "serves them, and hold them to the bounds recorded at export. One line per version; "
        "exit 0 when every version passes, 1 when one fails or has no golden data.",
        epilog=EPILOG,
    )
    add_model_repository(ve)
    ve.add_argument("--model", action="append", dest="models", metavar="NAME",
                    help="check only this model (repeatable)")
    ve.add_argument(
        "--emulate-cpu", metavar="QEMU_CPU",
        help="run the check under QEMU user-mode emulation of another x86 CPU model, e.g. Haswell "
        "(AVX2 only, no VNNI: the int16-saturating kernel); needs qemu-x86_64 (Debian qemu-user)",
    )
    ve.add_argument(
        "--native-ort", action="store_true",
        help="check as Triton's native onnxruntime backend (NGC) runs the file: without the "
        "session option the python-ort runner sets where this CPU's INT8 kernel saturates",
    )
    return tool


def main(argv: list[str] | None = None) -> int:
    args = build_tool().parse(argv)
    from tritonstack.converters.errors import ConverterError

    try:
        return {"export": _export, "bench": _bench, "verify": _verify}[args.command](args)
    except KeyboardInterrupt:
        print("Interrupted: stopped; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConverterError as exc:
        return _fail(args, exc, exc.exit_code)
    except FileNotFoundError as exc:
        return _fail(args, exc, EXIT_USAGE)
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        print(f"InternalError: {type(exc).__name__}: {exc} (a bug in the converters; rerun with "
              "--verbose for the traceback and report it)", file=sys.stderr)
        if args.verbose:
            import traceback
            traceback.print_exception(exc)
        return EXIT_INTERNAL


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    if args.verbose:
        import traceback

        traceback.print_exception(exc)
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return code


def export_spec(args: argparse.Namespace, *, source: str, name: str, task: str | None,
                version: int | None = None) -> ExportSpec:
    """The :class:`ExportSpec` of :func:`add_export_options`' options (and ``--model-repository``)."""
    return ExportSpec(
        source=source,
        name=name,
        task=task,
        precisions=tuple(args.precisions or (args.default_precision,)),
        int8_mode=args.int8_mode,
        int8_activations=args.int8_activations,
        int8_weights=args.int8_weights,
        calibration=args.calibration,
        max_batch_size=args.max_batch_size,
        instances=args.instances,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes or ()),
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        queue_timeout_ms=args.queue_timeout_ms,
        admit_rows=args.admit_rows,
        admit_ms=args.admit_ms,
        repository=args.model_repository,
        version=version,
        keep=args.keep,
        target=args.target,
        opset=args.opset,
        optimize=args.optimize,
        intra_op_threads=args.intra_op_threads,
        work_dir=args.work_dir,
        fresh=args.fresh,
        calibration_size=args.calibration_size,
        evaluation_size=args.evaluation_size,
        thresholds=Thresholds(**{field: getattr(args, field) for _, field, _ in _THRESHOLD_OPTIONS
                                 if getattr(args, field) is not None}),
    )


def _export(args: argparse.Namespace) -> int:
    from tritonstack.converters import progress
    from tritonstack.converters.api import export

    progress.set_enabled(sys.stderr.isatty() and not args.quiet and not args.json)
    spec = export_spec(args, source=args.source, name=args.name, task=args.task,
                       version=args.model_version)
    report = export(spec, progress=None if args.json else _progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for m in report.models:
            print(f"wrote {m.name} version {m.version} ({m.precision}) -> {m.path}")
        print(f"done in {report.seconds:.1f}s")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from tritonstack.converters.verify import run_emulated, verify_repository
    from tritonstack.serving.cpu import describe_cpu, int8_kernel

    if args.emulate_cpu:
        argv = ["verify", f"--model-repository={args.model_repository}", *(f"--model={m}" for m in args.models or ()),
                *(["--json"] if args.json else []), *(["--native-ort"] if args.native_ort else [])]
        return run_emulated(args.emulate_cpu, argv)

    checks = verify_repository(args.model_repository, tuple(args.models or ()), native_ort=args.native_ort)
    if args.json:
        print(json.dumps({"cpu": describe_cpu(), "int8_kernel": int8_kernel(),
                          "versions": [c.to_dict() for c in checks]}, indent=2))
    else:
        how = ("as the native onnxruntime backend runs it" if args.native_ort
               else "as the python-ort runner serves it")
        print(f"CPU: {describe_cpu()}; int8 kernel: {int8_kernel()}; {how}")
        for c in checks:
            print(f"{c.status:<9} {c.model:<22} v{c.version:<3} {c.precision:<5} {c.detail}")
    return EXIT_OK if all(c.status == "ok" for c in checks) else EXIT_CHECK


def _progress(line: str) -> None:
    print(line, flush=True)


def _bench(args: argparse.Namespace) -> int:
    from tritonstack.converters.bench import bench_model

    rows = []
    for folder in args.models:
        rows.extend(
            bench_model(
                folder,
                batches=tuple(args.batches or (1, 32)),
                seq_len=args.seq_len,
                threads=args.threads,
                seconds=args.duration,
            )
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from tritonstack.serving.cpu import describe_cpu, int8_kernel

    print(f"CPU: {describe_cpu()}; int8 kernel: {int8_kernel()}")
    print(f"{'model':<22} {'ver':>3} {'size MB':>8} {'batch':>5} {'rows/s':>9} {'ms/batch':>9}")
    for r in rows:
        print(
            f"{r['model']:<22} {r['version']:>3} {r['size_mb']:>8.1f} {r['batch']:>5} "
            f"{r['rows_per_s']:>9.0f} {r['ms_per_batch']:>9.2f}"
        )
    return EXIT_OK
