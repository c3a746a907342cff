"""What this CPU computes for INT8: a probe of ORT's u8 x s8 kernel, and a description of the CPU.

A 1 x 64 ``MatMulInteger`` of 255 (uint8) by 127 (int8) tells in a millisecond whether this
CPU's u8 x s8 kernel sums pairs in int16 and saturates (AVX2 only, AVX-512 without VNNI) or is
exact (VNNI, AMX). Where it saturates, sessions get ``session.x64quantprecision=1`` (ORT then
runs int8 weights on its exact u8 x u8 kernels): decided by what the kernel computes, not by a
list of CPU names. ``python -m tritonstack.converters verify`` runs the same probe.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Mapping

import numpy as np

#: The session option that makes ORT run int8 weights on its exact u8 x u8 kernels.
EXACT_INT8_OPTION = {"session.x64quantprecision": "1"}
_PROBE_K = 64
_PROBE_EXACT = 255 * 127 * _PROBE_K  # 2,072,640; the int16-pair kernel returns 1,048,544


# MatMulInteger(a: uint8 [1, 64], b: int8 [64, 1] all 127) -> int32 [1, 1], opset 13, IR 7; kept
# serialized so the runner needs no `onnx` package (the NGC image has none); tests rebuild it.
_PROBE_MODEL = (
    "CAcSFHRyaXRvbi1zZXJ2aW5nLXN0YWNrOqQBChgKAWEKAWISAXkiDU1hdE11bEludGVnZXISEWludDhfa2VybmVsX3By"
    "b2JlKksIQAgBEANCAWJKQH9/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39aEwoBYRIOCgwIAhIICgIIAQoCCEBiEwoBeRIOCgwIBhIICgIIAQoCCAFCBAoAEA0="
)


def probe_matmul(config_entries: Mapping[str, str] | None = None) -> int:
    """What ORT's CPU u8 x s8 kernel returns for 255 x 127 summed over 64 (exact: 2,072,640)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(base64.b64decode(_PROBE_MODEL), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    return int(session.run(None, {"a": np.full((1, _PROBE_K), 255, np.uint8)})[0][0, 0])


@functools.lru_cache(maxsize=1)
def int8_kernel() -> str:
    """``exact`` (VNNI / AMX) or ``int16-saturating`` (AVX2, AVX-512 without VNNI), by probing."""
    return "exact" if probe_matmul() == _PROBE_EXACT else "int16-saturating"


def int8_config_entries() -> dict[str, str]:
    """Session config entries that make this CPU compute INT8 graphs exactly (empty if it does)."""
    return dict(EXACT_INT8_OPTION) if int8_kernel() != "exact" else {}


#: Set by ``converters verify --emulate-cpu`` for the child it runs under QEMU.
EMULATED_CPU_ENV = "TRITON_STACK_EMULATED_CPU"


@functools.lru_cache(maxsize=1)
def cpu_description() -> dict[str, object]:
    """Vendor, model name and the INT8-relevant flags of this CPU, from ``/proc/cpuinfo``."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    emulated = os.environ.get(EMULATED_CPU_ENV)
    if emulated:  # under QEMU user mode /proc/cpuinfo still describes the host
        return {"vendor": "QEMU", "model": f"{emulated} (emulated by QEMU on {info.get('model name')})",
                "int8_flags": []}
    return {"vendor": info.get("vendor_id", "unknown"), "model": info.get("model name", "unknown"),
            "int8_flags": [f for f in wanted if f in flags]}


def describe_cpu(cpu: Mapping[str, object] | None = None) -> str:
    cpu = cpu or cpu_description()
    flags = cpu.get("int8_flags") or []
    if cpu.get("vendor") == "QEMU":  # the flags are the emulated model's, not read here
        return str(cpu.get("model"))
    return f"{cpu.get('model', 'unknown CPU')} ({', '.join(map(str, flags)) or 'no AVX2'})"
