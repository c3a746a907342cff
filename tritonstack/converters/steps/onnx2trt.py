"""``onnx2trt``: ONNX -> TensorRT plan, built in a child process, with a reproducer next to it.

* FP16: from the FP32 (unfused) ONNX with the FP16 builder flag;
* INT8: from the static QDQ ONNX as a *strongly typed* network (precisions come from the
  Q/DQ nodes, no implicit INT8 calibration in TensorRT).

The build runs in ``python -m tritonstack.converters.steps.onnx2trt ...`` so a TensorRT crash becomes a
failed step, not a dead CLI. Beside each plan, ``<plan>.trtexec.sh`` holds the equivalent
``trtexec`` command (and a ``polygraphy`` one) to reproduce the build by hand. Without a GPU
or the ``tensorrt`` package the step is skipped with that reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tritonstack.converters.steps.base import ExportContext, Step


@dataclasses.dataclass(frozen=True)
class TrtInput:
    onnx_path: Path
    precision: str  # "fp32" | "fp16" | "int8"
    output: Path  # model.plan
    # input name -> (min, opt, max) full shapes including the batch axis
    shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    timeout_s: float = 1800.0


def gpu_missing() -> str | None:
    """Why TensorRT cannot run here (None when it can)."""
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU (nvidia-smi not found)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install '.[gpu]')"
    return None


def _shape_arg(shapes: Mapping[str, tuple], which: int) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, s[which]))}" for name, s in shapes.items())


def reproducer(inp: TrtInput) -> str:
    """Shell script text reproducing the build with trtexec and polygraphy."""
    trtexec = ["trtexec", f"--onnx={inp.onnx_path.name}", f"--saveEngine={inp.output.name}",
               f"--minShapes={_shape_arg(inp.shapes, 0)}", f"--optShapes={_shape_arg(inp.shapes, 1)}",
               f"--maxShapes={_shape_arg(inp.shapes, 2)}"]
    trtexec += {"fp16": ["--fp16"], "int8": ["--stronglyTyped"], "fp32": []}[inp.precision]
    poly = ["polygraphy", "convert", inp.onnx_path.name, "-o", inp.output.name]
    for name, (lo, opt, hi) in inp.shapes.items():
        poly += ["--trt-min-shapes", f"{name}:{list(lo)}", "--trt-opt-shapes", f"{name}:{list(opt)}",
                 "--trt-max-shapes", f"{name}:{list(hi)}"]
    poly += {"fp16": ["--fp16"], "int8": ["--strongly-typed"], "fp32": []}[inp.precision]
    return ("#!/bin/sh\n# Reproduces this plan (run next to the ONNX file).\n"
            + shlex.join(trtexec) + "\n# or\n# " + shlex.join(poly) + "\n")


def run(inp: TrtInput) -> dict[str, object]:
    """Build the plan in a child process; returns the plan and reproducer paths."""
    inp.output.parent.mkdir(parents=True, exist_ok=True)
    script = inp.output.with_name(inp.output.name + ".trtexec.sh")
    script.write_text(reproducer(inp))
    cmd = [sys.executable, "-m", "tritonstack.converters.steps.onnx2trt", str(inp.onnx_path), str(inp.output),
           inp.precision]
    for name, triple in inp.shapes.items():
        cmd += ["--shape", f"{name}=" + "/".join(",".join(map(str, s)) for s in triple)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=inp.timeout_s)
    if proc.returncode != 0 or not inp.output.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"TensorRT build exited with {proc.returncode}: {' | '.join(tail)}; "
                           f"reproduce with {script}")
    return {"plan": str(inp.output), "reproducer": str(script)}


def _build(onnx_path: str, plan: str, precision: str, shapes: dict[str, list[tuple[int, ...]]]) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if precision == "int8":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SystemExit("ONNX parse failed: " + "; ".join(errors))
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SystemExit("TensorRT returned no engine (see the log above)")
    Path(plan).write_bytes(bytes(serialized))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tritonstack.converters.steps.onnx2trt")
    parser.add_argument("onnx")
    parser.add_argument("plan")
    parser.add_argument("precision", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--shape", action="append", default=[], help="NAME=min/opt/max, dims comma-separated")
    args = parser.parse_args(argv)
    shapes = {}
    for item in args.shape:
        name, spec = item.split("=")
        shapes[name] = [tuple(int(d) for d in part.split(",")) for part in spec.split("/")]
    _build(args.onnx, args.plan, args.precision, shapes)


if __name__ == "__main__":
    main()


class Onnx2TrtStep(Step):
    """One TensorRT plan per precision (tensorrt target): FP16 from the FP32 graph, INT8 from QDQ."""

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.name = f"onnx2trt-{precision}"

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.spec import Target

        return None if ctx.spec.target is Target.TENSORRT else f"target {ctx.spec.target} serves ONNX"

    def run(self, ctx: ExportContext) -> dict[str, object]:
        onnx_in = ctx.served["int8"] if self.precision == "int8" else ctx.raw
        assert onnx_in is not None
        return run(TrtInput(onnx_in.path, self.precision, ctx.work / f"trt-{self.precision}" / "model.plan",
                            profile_shapes(onnx_in.path, ctx.spec.max_batch_size)))

    def keep(self, ctx: ExportContext, result: object) -> None:
        ctx.plans[self.precision] = Path(str(result["plan"]))  # type: ignore[index]

    def to_dict(self, result: object) -> dict:
        return {"plan_path": result["plan"], "reproducer_path": result["reproducer"]}  # type: ignore[index]

    def from_dict(self, data: dict) -> dict[str, object]:
        return {"plan": data["plan_path"], "reproducer": data["reproducer_path"]}


def profile_shapes(path: Path, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """TensorRT optimization profile: batch 1/max/2, variable axes 1/128/512 (opt 128)."""
    from tritonstack.converters.triton_config import io_from_onnx

    inputs, _ = io_from_onnx(path)
    shapes = {}
    for t in inputs:
        lo = (1, *(d if d > 0 else 1 for d in t.dims))
        opt = (max(1, max_batch // 2), *(d if d > 0 else 128 for d in t.dims))
        hi = (max_batch, *(d if d > 0 else 512 for d in t.dims))
        shapes[t.name] = (lo, opt, hi)
    return shapes
