"""Benchmarks beside the campaigns: Triton's perf_analyzer on a campaign's target
(:mod:`.perf_analyzer`, ``loadtest perf-analyzer`` and ``--crosscheck``), served pipelines against
in-process ONNX Runtime (:mod:`.pipeline`, ``loadtest bench-pipelines``), the client library's
overhead (:mod:`.client`) and callers that do not back off (:mod:`.storm`)."""
