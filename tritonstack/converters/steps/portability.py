"""``portability``: which x86 integer kernels compute the INT8 graph exactly (:mod:`converters.int8_kernels`).

Recorded per kernel in ``metadata.json["portability"]``; refused for the native onnxruntime
backend when a kernel could saturate, since nothing there can set the session option that
prevents it.
"""

from __future__ import annotations

from tritonstack.converters import int8_kernels
from tritonstack.converters.errors import CheckFailed
from tritonstack.converters.steps.base import ExportContext, Step

AVX2_KERNEL = "u8s8-int16 (AVX2 only, AVX-512 without VNNI)"


class PortabilityStep(Step):
    name = "portability"
    check = True

    def skipped_because(self, ctx: ExportContext) -> str | None:
        return None if "int8" in ctx.served else "no INT8 model"

    def run(self, ctx: ExportContext) -> dict[str, object]:
        from tritonstack.converters.spec import Target

        verdict = int8_kernels.check(ctx.served["int8"].path)
        if not verdict.exact_everywhere and ctx.spec.target is Target.ONNXRUNTIME:
            raise CheckFailed(
                f"the INT8 graph can saturate on CPUs without VNNI ({len(verdict.saturating)} integer "
                "products take int8 weights beyond +-64) and Triton's native onnxruntime backend cannot "
                "set session.x64quantprecision; export with --int8-weights u8 (or s7)")
        return verdict.to_dict()

    def keep(self, ctx: ExportContext, result: object) -> None:
        ctx.portability = result  # type: ignore[assignment]

    def describe(self, result: object) -> str:
        return str(result["kernels"][AVX2_KERNEL])  # type: ignore[index]
