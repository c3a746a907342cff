"""The one typed summary of a run: analysed once (:func:`analyse`), written as summary.json, read back
by ``cost`` and ``compare`` (:func:`read`) through the same type.

The Markdown, HTML and compare writers get a :class:`Summary` and only read it; nothing mutates
it (it is frozen: a later fact, such as the report folder's file list, makes a new one with
``dataclasses.replace``). Its ``schema`` is checked on reading: a file of another schema (an older
loadtest's, without the machine record) or a file that is not a summary is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tritonstack.loadtest.campaign.sizing import Capacity
from tritonstack.loadtest.campaign.slo import TOTAL, Verdict
from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.errors import CampaignError
from tritonstack.loadtest.report import goodput
from tritonstack.loadtest.report.machine import Machine
from tritonstack.loadtest.runner import metrics, results

SCHEMA = 2  # 2: the machine record, the capacity a sized campaign was given; 1 (no "schema"): before
FILE = "summary.json"

Stats = dict[str, dict[str, float]]  # stats name (TOTAL for all traffic) -> metric -> value


class ReportError(CampaignError):
    """A summary.json that cannot be read: missing, not JSON, not a summary, or of another schema."""


@dataclasses.dataclass(frozen=True)
class VerdictRecord:
    slo: str
    value: float | None
    passed: bool
    text: str


@dataclasses.dataclass(frozen=True)
class FindMaxResult:
    max_rps: float
    target_rps: float
    p99_ms: float
    users: int


@dataclasses.dataclass(frozen=True)
class Server:
    cpu_pct: float | None
    models: dict[str, dict[str, float]]
    memory: dict[str, Any] | None
    memory_by_process: dict[str, dict[str, Any]]
    drift: list[dict[str, Any]]
    data_quality: dict[str, dict[str, float]]
    #: CPU of tritonserver and its stubs over the run, per request sent (the generator's is apart)
    cpu_us_per_request: float | None = None


@dataclasses.dataclass(frozen=True)
class Generator:
    processes: list[dict[str, Any]]
    requests: int
    cpu_s_during_load: float
    cpu_us_per_request: float | None
    cpu_pct_whole_run: float | None


@dataclasses.dataclass(frozen=True)
class Summary:
    """Everything summary.json holds. ``windows`` are the recorded windows (without their raw
    histograms), in the order they ran, each with ``name``, ``stats`` and the window's CPU, memory
    and Triton figures."""

    campaign: str
    description: str
    started_at: str
    target: str
    wall_s: float
    machine: Machine
    slo_window_s: float
    stats: Stats
    windows: tuple[dict[str, Any], ...]
    find_max: FindMaxResult | None
    concurrency: dict[str, Any] | None
    server: Server
    generator: Generator
    verdicts: tuple[VerdictRecord, ...]
    passed: bool
    crosscheck: dict[str, Any] | None = None
    capacity: Capacity | None = None
    files: tuple[str, ...] = ()
    schema: int = SCHEMA

    @property
    def total(self) -> dict[str, float]:
        """The all-traffic row of the SLO window ({} when nothing was measured)."""
        return self.stats.get(TOTAL, {})

    @property
    def throughput(self) -> float:
        """The rate to price: find-max's highest passing rate, else the SLO window's."""
        return self.find_max.max_rps if self.find_max else float(self.total.get("rps", 0.0))

    @property
    def p99_ms(self) -> float | None:
        if self.find_max:
            return self.find_max.p99_ms
        return self.total.get("p99_ms") if self.total else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "campaign": self.campaign, "description": self.description,
            "started_at": self.started_at, "target": self.target, "wall_s": self.wall_s,
            "machine": self.machine.to_dict(),
            "capacity": None if self.capacity is None else dataclasses.asdict(self.capacity),
            "slo_window": {"duration_s": self.slo_window_s, "stats": self.stats},
            "windows": list(self.windows),
            "find_max": None if self.find_max is None else dataclasses.asdict(self.find_max),
            "concurrency": self.concurrency, "server": dataclasses.asdict(self.server),
            "generator": dataclasses.asdict(self.generator),
            "verdicts": [dataclasses.asdict(v) for v in self.verdicts], "passed": self.passed,
            "crosscheck": self.crosscheck, "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = FILE) -> Summary:
        """Inverse of :meth:`to_dict`; :class:`ReportError` in one line for anything else."""
        if not isinstance(data, Mapping):
            raise ReportError(f"{where} is a JSON {type(data).__name__}, not a load-test summary")
        if "slo_window" not in data and "find_max" not in data:
            raise ReportError(f"{where} has no throughput (no slo_window or find_max): it is not a load-test "
                              "summary; pass the report folder of a `python -m tritonstack.loadtest run`")
        if data.get("schema") != SCHEMA:
            found = "no schema" if "schema" not in data else f"schema {data['schema']!r}"
            raise ReportError(f"{where} was written by another loadtest version ({found}; this one reads "
                              f"schema {SCHEMA}, which records the machine); rerun the campaign")
        try:
            window = data["slo_window"]
            fm, cap = data["find_max"], data.get("capacity")
            return cls(
                schema=SCHEMA, campaign=str(data["campaign"]), description=str(data["description"]),
                started_at=str(data["started_at"]), target=str(data["target"]), wall_s=float(data["wall_s"]),
                machine=Machine.from_dict(data["machine"]), slo_window_s=float(window["duration_s"]),
                stats={str(k): {str(m): float(v) for m, v in row.items()} for k, row in window["stats"].items()},
                windows=tuple(dict(w) for w in data["windows"]),
                find_max=None if fm is None else FindMaxResult(**fm),
                concurrency=data["concurrency"], server=Server(**data["server"]),
                generator=Generator(**data["generator"]),
                verdicts=tuple(VerdictRecord(**v) for v in data["verdicts"]), passed=bool(data["passed"]),
                crosscheck=data.get("crosscheck"), capacity=None if cap is None else Capacity(**cap),
                files=tuple(data.get("files") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise ReportError(f"{where} is not a valid schema-{SCHEMA} load-test summary ({what})") from None


def read(run: str | Path) -> Summary:
    """A run's summary: RUN is its report folder or its summary.json."""
    path = Path(run)
    path = path / FILE if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist; pass the report folder of a `python -m tritonstack.loadtest "
                          "run` (or its summary.json)") from None
    except OSError as exc:
        raise ReportError(f"{path} cannot be read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not JSON ({str(exc).splitlines()[0]}); pass a run's summary.json") from None
    return Summary.from_dict(data, str(path))


def write(summary: Summary, folder: Path) -> Path:
    path = folder / FILE
    path.write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
    return path


@dataclasses.dataclass(frozen=True)
class Sample:
    """What the runner measured around the Locust run: monotonic time, server and generator CPU
    seconds, Triton's counters and the stack's monitoring series."""

    t: float
    server_cpu_s: float | None
    generator_cpu_s: float
    triton: metrics.Counters | None
    monitoring: dict[str, Any] | None


def _per_request(after_s: float | None, before_s: float | None, requests: int) -> float | None:
    """µs of CPU per request between two readings; None without a reading or a request."""
    if after_s is None or before_s is None or not requests:
        return None
    return 1e6 * (after_s - before_s) / requests


def analyse(campaign: Campaign, recorded: Mapping[str, Any], generators: list[dict[str, Any]],
            before: Sample, after: Sample, *, target: str, started_at: str, machine: Machine,
            crosscheck: dict[str, Any] | None = None, capacity: Capacity | None = None) -> Summary:
    """The run's summary from what Locust recorded (``windows.json``), the generators' CPU and the
    samples around the run: the SLO window, verdicts, find-max result, goodput curve, server and
    generator figures. The one place a summary is built."""
    windows, best = recorded["windows"], recorded["find_max"]
    rows, duration = results.slo_window(campaign, windows, best)
    verdicts: list[Verdict] = results.verdicts(campaign, windows, best)
    wall = after.t - before.t
    senders = [g for g in generators if g["requests"]]
    gen_cpu = sum(g["cpu_s"] for g in generators)
    requests = sum(g["requests"] for g in senders)
    kept = tuple({k: v for k, v in w.items() if k != "counts"} for w in windows)
    memory, memory_by_process = metrics.window_memory_trends(list(kept))
    find_max = None
    if best:
        find_max = FindMaxResult(max_rps=best["stats"][TOTAL]["rps"], target_rps=best["target_rps"],
                                 p99_ms=best["stats"][TOTAL]["p99_ms"], users=best["users"])
    sweep = goodput.curve(campaign, kept)
    total = rows.get(TOTAL, {})
    passed = all(v.passed for v in verdicts) and bool(total.get("requests")) and (
        bool(campaign.slos) or not total.get("errors"))
    return Summary(
        campaign=campaign.name, description=campaign.description, started_at=started_at, target=target,
        wall_s=wall, machine=machine, slo_window_s=duration, stats=rows, windows=kept, find_max=find_max,
        concurrency=sweep.to_dict() if sweep else None,
        server=Server(cpu_pct=metrics.cpu_percent(after.server_cpu_s, before.server_cpu_s, wall),
                      cpu_us_per_request=_per_request(after.server_cpu_s, before.server_cpu_s, requests),
                      models=metrics.model_deltas(after.triton, before.triton, wall),
                      memory=memory, memory_by_process=memory_by_process,
                      drift=(after.monitoring or {}).get("drift", []),
                      data_quality=metrics.quality_deltas(after.monitoring, before.monitoring)),
        generator=Generator(processes=generators, requests=requests, cpu_s_during_load=gen_cpu,
                            cpu_us_per_request=1e6 * gen_cpu / requests if requests else None,
                            cpu_pct_whole_run=metrics.cpu_percent(after.generator_cpu_s, before.generator_cpu_s,
                                                                  wall)),
        verdicts=tuple(VerdictRecord(str(v.slo), v.value, v.passed, v.describe()) for v in verdicts),
        passed=passed, crosscheck=crosscheck, capacity=capacity,
    )
