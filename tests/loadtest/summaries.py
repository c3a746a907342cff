"""Summaries built through the one typed summary (report.summary), for the tests of its readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonstack.loadtest.report.machine import Machine
from tritonstack.loadtest.report.summary import FindMaxResult, Generator, Server, Summary, VerdictRecord, write

XEON = Machine(cpu="Intel(R) Xeon(R) Processor", cores=2, int8=("avx512_vnni", "amx_int8", "avx2"), gpu=None,
               server_commit="0123456789abcdef0123456789abcdef01234567")


def row(rps: float, p99_ms: float, requests: float = 1000.0, errors: float = 0.0) -> dict[str, float]:
    return {"requests": requests, "errors": errors, "rps": rps, "p50_ms": p99_ms / 3, "p95_ms": p99_ms * 0.9,
            "p99_ms": p99_ms, "max_ms": p99_ms * 1.2, "error_rate": errors / requests if requests else 0.0,
            "shed": 0.0, "shed_p99_ms": 0.0}


def make(*, campaign: str = "c", stats: dict[str, dict[str, float]], windows: list[dict[str, Any]] = (),
         find_max: FindMaxResult | None = None, passed: bool = True, verdicts: tuple[VerdictRecord, ...] = (),
         machine: Machine = XEON) -> Summary:
    return Summary(
        campaign=campaign, description="", started_at="2026-12-05T10:00:00+00:00", target="127.0.0.1:8001",
        wall_s=30.0, machine=machine, slo_window_s=20.0, stats=stats, windows=tuple(windows),
        find_max=find_max, concurrency=None,
        server=Server(cpu_pct=50.0, models={}, memory=None, memory_by_process={}, drift=[], data_quality={}),
        generator=Generator(processes=[], requests=int(stats["Aggregated"]["requests"]), cpu_s_during_load=1.0,
                            cpu_us_per_request=100.0, cpu_pct_whole_run=10.0),
        verdicts=verdicts, passed=passed)


def save(folder: Path, summary: Summary) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(summary, folder)
    return folder
