"""Which x86 integer kernels compute an INT8 ONNX graph exactly: the portability check.

ONNX Runtime (MLAS) multiplies uint8 activations by weights with one of these kernels on x86:

==========================  =========================================  ======================
weights                     CPU                                        arithmetic
==========================  =========================================  ======================
uint8 (u8 x u8)             every x86-64 (``vpmaddwd`` on 16-bit)       exact
int8 (u8 x s8)              AVX-512 VNNI, AVX-VNNI, AMX                 exact (int32 sums)
int8 (u8 x s8)              AVX2 only, or AVX-512 without VNNI          pairs summed in int16
                            (AMD Zen 2/3, Intel before Cascade Lake)   (``vpmaddubsw``): saturate
==========================  =========================================  ======================

The saturating kernel adds two adjacent ``a * b`` products in int16: ``255 * 127 * 2 = 64,770``
overflows 32,767 (a 255 x 127 ``MatMulInteger`` over K = 64 returns 1,048,544 instead of
2,072,640). It cannot overflow when every int8 weight lies in [-64, 64]
(``255 * 64 * 2 = 32,640``), which is also where ORT's own ``session.x64quantprecision`` rewrite
leaves weights alone. Graphs quantized to int8 activations are no escape: ORT on x86 turns
int8 QDQ activations into uint8 before it fuses ``QLinearConv`` / ``QLinearMatMul``.

So a graph is exact on every x86 CPU *by construction* when each integer product it computes
takes uint8 weights, or int8 weights within [-64, 64]. :func:`check` proves that per node from
the graph alone (no CPU needed); it is the export's ``portability`` record and the reason the
default INT8 recipes are ``u8`` (dynamic) and ``s7`` (static QDQ).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["SAFE_INT8_WEIGHT", "IntegerProduct", "Portability", "check"]

#: Largest |int8 weight| a u8 x s8 int16 pair sum cannot saturate on: 255 * 64 * 2 <= 32767.
SAFE_INT8_WEIGHT = 64

# op type -> index of its weight (B / W) input
_INTEGER_OPS: dict[str, int] = {
    "MatMulInteger": 1,
    "ConvInteger": 1,
    "QLinearMatMul": 3,
    "QLinearConv": 3,
    "MatMulIntegerToFloat": 1,  # com.microsoft
    "DynamicQuantizeMatMul": 1,  # com.microsoft: A float, quantized to uint8 inside
    "QGemm": 3,  # com.microsoft
}
# float ops ORT fuses into QLinear* when their inputs come from DequantizeLinear (QDQ graphs)
_QDQ_CONSUMERS = {"MatMul": 1, "Conv": 1, "Gemm": 1}


@dataclasses.dataclass(frozen=True)
class IntegerProduct:
    """One integer matrix product of the graph and the kernels that compute it exactly."""

    node: str
    op: str
    weight: str  # "u8" | "s8" | "unknown"
    max_abs_weight: int | None  # int8 weights only: the largest stored |w|

    @property
    def exact_everywhere(self) -> bool:
        if self.weight == "u8":
            return True
        return self.weight == "s8" and self.max_abs_weight is not None and (
            self.max_abs_weight <= SAFE_INT8_WEIGHT)


@dataclasses.dataclass(frozen=True)
class Portability:
    """The check's verdict, per kernel class, as recorded in ``metadata.json``."""

    products: tuple[IntegerProduct, ...]

    @property
    def saturating(self) -> tuple[IntegerProduct, ...]:
        """Products the int16 pair sums of AVX2 / AVX-512-without-VNNI kernels can saturate."""
        return tuple(p for p in self.products if not p.exact_everywhere)

    @property
    def exact_everywhere(self) -> bool:
        return not self.saturating

    def to_dict(self) -> dict[str, object]:
        weights: dict[str, int] = {}
        for p in self.products:
            weights[p.weight] = weights.get(p.weight, 0) + 1
        risky = self.saturating
        if not self.products:
            avx2 = "exact: no integer products"
        elif not risky:
            avx2 = (f"exact by construction: {len(self.products)} integer products, uint8 weights or "
                    f"int8 weights within +-{SAFE_INT8_WEIGHT}")
        else:
            worst = max((p.max_abs_weight or 127) for p in risky)
            avx2 = (f"can saturate: {len(risky)} of {len(self.products)} integer products take int8 "
                    f"weights up to +-{worst}; exact only with session.x64quantprecision=1 "
                    "(set by the python-ort runner where its probe finds this kernel)")
        return {
            "exact_everywhere": self.exact_everywhere,
            "integer_products": len(self.products),
            "weights": weights,
            "kernels": {
                "u8s8-exact (AVX-512 VNNI, AVX-VNNI, AMX)": "exact",
                "u8u8 (every x86-64)": "exact",
                "u8s8-int16 (AVX2 only, AVX-512 without VNNI)": avx2,
            },
            "saturating_nodes": [p.node for p in risky][:20],
        }


def _initializers(graph) -> dict[str, object]:
    return {i.name: i for i in graph.initializer}


def _weight_form(name: str, inits: Mapping[str, object],
                 producer: Mapping[str, object]) -> tuple[str, int | None]:
    """("u8" | "s8" | "unknown", max |w| for int8) of a weight tensor."""
    from onnx import TensorProto, numpy_helper

    init = inits.get(name)
    if init is None:
        node = producer.get(name)
        # activations quantized at run time (DynamicQuantizeLinear) are uint8
        if node is not None and node.op_type == "DynamicQuantizeLinear":
            return "u8", None
        return "unknown", None
    if init.data_type == TensorProto.UINT8:  # type: ignore[attr-defined]
        return "u8", None
    if init.data_type != TensorProto.INT8:  # type: ignore[attr-defined]
        return "unknown", None
    # the kernel multiplies the stored integers; zero points are corrected for afterwards
    values = numpy_helper.to_array(init).astype(np.int32)
    return "s8", int(np.abs(values).max()) if values.size else 0


def check(model_or_path) -> Portability:
    """Every integer matrix product of an ONNX graph, and whether each is exact on every x86 CPU.

    ``model_or_path``: an ``onnx.ModelProto`` or the path of an ``.onnx`` file.
    """
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, str | Path) else model_or_path
    graph = model.graph
    inits = _initializers(graph)
    producer = {out: node for node in graph.node for out in node.output}
    products = []
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type in _INTEGER_OPS:
            w_index = _INTEGER_OPS[node.op_type]
            weight = node.input[w_index] if len(node.input) > w_index else ""
            form, max_abs = _weight_form(weight, inits, producer)
            products.append(IntegerProduct(name, node.op_type, form, max_abs))
        elif node.op_type in _QDQ_CONSUMERS:
            dq = producer.get(node.input[_QDQ_CONSUMERS[node.op_type]]) if len(node.input) > 1 else None
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            form, max_abs = _weight_form(dq.input[0], inits, producer)
            products.append(IntegerProduct(name, f"{node.op_type} (QDQ)", form, max_abs))
    return Portability(tuple(products))
