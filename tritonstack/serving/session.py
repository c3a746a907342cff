"""The ONNX Runtime session of a version, configured from its Triton config parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def parse_parameters(config: Mapping[str, object]) -> dict[str, str]:
    """Triton ``parameters`` as a plain ``{key: string_value}`` dict."""
    params = config.get("parameters") or {}
    return {k: str(v.get("string_value", "")) if isinstance(v, dict) else str(v)
            for k, v in params.items()}  # type: ignore[union-attr]


def choose_providers(requested: str, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """(usable providers in requested order, dropped ones); CPU is always kept last."""
    wanted = [p.strip() for p in requested.split(",") if p.strip()] or ["CPUExecutionProvider"]
    usable = [p for p in wanted if p in available]
    dropped = [p for p in wanted if p not in available]
    if "CPUExecutionProvider" not in usable:
        usable.append("CPUExecutionProvider")
    return usable, dropped


def make_session(model_path: str, params: Mapping[str, str], device_id: int = 0,
                 config_entries: Mapping[str, str] | None = None):
    """An ORT InferenceSession configured from the config parameters (and session config entries)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0") or 0)
    options.inter_op_num_threads = int(params.get("inter_op_thread_count", "0") or 0)
    providers, dropped = choose_providers(params.get("execution_providers", ""),
                                          ort.get_available_providers())
    provider_options = [{"device_id": str(device_id)} if p in ("CUDAExecutionProvider",
                                                                "TensorrtExecutionProvider") else {}
                        for p in providers]
    session = ort.InferenceSession(model_path, sess_options=options, providers=providers,
                                   provider_options=provider_options)
    return session, dropped
