"""``python -m tritonstack.loadtest cost``: what a million requests cost on a GPU, from measured throughput.

Throughput (requests per second one server sustained) comes from a load-test report, and is
labelled with where it was measured:

* ``cost REPORT --gpu L4``: the report's RPS priced as one L4. If the report says it was measured
  elsewhere (this machine's CPU), the output says so: the figure is then the cost *if* an L4
  only matched that throughput, an upper bound, not an L4 measurement.
* ``cost T4=t4.json L4=l4.json A100=a100.json``: one report per GPU; the cheapest GPU whose
  report met its SLO is recommended.
* ``--rps N``: a throughput measured some other way (perf_analyzer, production metrics).
* ``--estimate-from L4``: scale an L4 measurement to the other GPUs of the price table by
  datasheet ratios. These rows are printed as ESTIMATE and are never recommended.

Prices and specifications live in ``loadtest/cost/gpus.toml`` (``--prices FILE`` for another).

Arithmetic, for throughput R requests/s and price P $/GPU-hour::

    GPU-hours per million requests = 1e6 / (3600 * R)
    $ per million at the measured RPS = GPU-hours * P        (the GPU busy at R all the time)
    $ per million at utilisation u     = GPU-hours * P / u    (capacity kept for bursts and p99)

Reports are read through the one summary type (report.summary): where each was measured is its
machine record (the GPU, else the CPU model and cores). Exit codes: 0 figures printed (and a
recommendation, if any report met its SLO), 1 no supplied report met its SLO, 2 bad command
line, report or price file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonstack.loadtest.errors import CampaignError

PRICES_FILE = Path(__file__).with_name("gpus.toml")
DEFAULT_UTILIZATION = 0.6
EXIT_OK, EXIT_NO_SLO_MET = 0, 1
_REQUIRED = ("hourly_usd", "memory_gib", "fp16_tflops", "memory_bandwidth_gbs")
_OPTIONAL = ("instance", "note")
class CostInputError(CampaignError):
    """A report, price table or option given to ``cost`` is invalid; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One row of the price table."""

    name: str
    hourly_usd: float
    memory_gib: float
    fp16_tflops: float
    memory_bandwidth_gbs: float
    instance: str = ""
    note: str = ""

    def relative_throughput(self, other: Gpu) -> float:
        """ESTIMATE of this GPU's throughput over ``other``'s, from datasheet figures."""
        return math.sqrt(self.fp16_tflops / other.fp16_tflops
                         * self.memory_bandwidth_gbs / other.memory_bandwidth_gbs)


def load_prices(path: Path = PRICES_FILE) -> dict[str, Gpu]:
    """Read and validate the price table; raise :class:`CostInputError` naming the bad entry."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise CostInputError(f"price table {path} does not exist; pass --prices FILE") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CostInputError(f"price table {path} is not valid TOML: {exc}") from exc
    table = data.get("gpus")
    if not isinstance(table, dict) or not table:
        raise CostInputError(f"price table {path} has no [gpus.NAME] entries")
    gpus = {}
    for name, entry in table.items():
        where = f"{path}: [gpus.{name}]"
        if not isinstance(entry, dict):
            raise CostInputError(f"{where} must be a table of keys ({', '.join(_REQUIRED)})")
        for key in entry:
            if key not in _REQUIRED + _OPTIONAL:
                close = difflib.get_close_matches(key, _REQUIRED + _OPTIONAL, n=1)
                allowed = ", ".join(_REQUIRED + _OPTIONAL)
                hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {allowed}"
                raise CostInputError(f"{where}: unknown key {key!r}{hint}")
        values: dict[str, Any] = {}
        for key in _REQUIRED:
            if key not in entry:
                raise CostInputError(f"{where} is missing {key} (a positive number)")
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise CostInputError(f"{where}: {key} must be a positive number, got {value!r}")
            values[key] = float(value)
        for key in _OPTIONAL:
            if not isinstance(entry.get(key, ""), str):
                raise CostInputError(f"{where}: {key} must be a string")
            values[key] = entry.get(key, "")
        gpus[name] = Gpu(name=name, **values)
    return gpus


def find_gpu(gpus: Mapping[str, Gpu], name: str) -> Gpu:
    """Case-insensitive lookup with a "did you mean"."""
    by_lower = {k.lower(): v for k, v in gpus.items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name, list(gpus), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CostInputError(f"unknown GPU {name!r}{hint} (known: {', '.join(gpus)}; add it to the price table)")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What the cost model needs from one load-test report."""

    path: str
    rps: float
    p99_ms: float | None = None
    slo_passed: bool | None = None  # None: the report states no SLO verdict
    device: str | None = None  # what served it: the run's GPU, else its CPU (summary.json's machine)
    machine: str | None = None  # the run's machine in one line


def same_gpu(device: str | None, name: str) -> bool:
    """Whether ``device`` (nvidia-smi's name, e.g. "NVIDIA L4", or a GPU= prefix) is the GPU ``name``."""
    if not device:
        return False
    words = {w for w in "".join(c if c.isalnum() else " " for c in device.lower()).split()}
    return name.lower() in words


def read_report(path: Path) -> Measurement:
    """A load test's summary (its report folder or summary.json, read through report.summary):
    throughput (find-max's highest passing rate, else the SLO window's), p99, SLO verdict and the
    machine it was measured on."""
    from tritonstack.loadtest.report.summary import ReportError, read

    try:
        found = read(path)
    except ReportError as exc:
        raise CostInputError(f"report {exc}") from None
    if found.throughput <= 0:
        raise CostInputError(f"report {path} measured {found.throughput:g} requests/s; nothing to price")
    return Measurement(path=str(path), rps=found.throughput, p99_ms=found.p99_ms, slo_passed=found.passed,
                       device=found.machine.device, machine=found.machine.label)


@dataclasses.dataclass(frozen=True)
class CostRow:
    """The cost of serving on one GPU at one throughput, and where that throughput came from."""

    gpu: Gpu
    rps: float
    source: str
    estimate: bool
    utilization: float
    measurement: Measurement | None = None

    @property
    def gpu_hours_per_million(self) -> float:
        """GPU-hours to serve a million requests at the measured RPS."""
        return 1e6 / (3600.0 * self.rps)

    @property
    def usd_per_million(self) -> float:
        """Dollars per million requests with the GPU busy at the measured RPS all the time."""
        return self.gpu_hours_per_million * self.gpu.hourly_usd

    @property
    def usd_per_million_at_target(self) -> float:
        """Dollars per million requests at the target utilisation."""
        return self.usd_per_million / self.utilization

    @property
    def slo_passed(self) -> bool | None:
        """The SLO verdict of the report behind this row (None: not measured, or no SLO)."""
        return None if self.estimate or self.measurement is None else self.measurement.slo_passed

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``--json``)."""
        return {
            "gpu": self.gpu.name, "rps": self.rps, "source": self.source, "estimate": self.estimate,
            "hourly_usd": self.gpu.hourly_usd, "gpu_hours_per_million": self.gpu_hours_per_million,
            "usd_per_million": self.usd_per_million, "utilization": self.utilization,
            "usd_per_million_at_utilization": self.usd_per_million_at_target,
            "p99_ms": self.measurement.p99_ms if self.measurement and not self.estimate else None,
            "slo_passed": self.slo_passed,
            "report": self.measurement.path if self.measurement else None,
        }


def _measured_source(m: Measurement, gpu: Gpu) -> str:
    if m.device is None:
        return "measured (report names no device)"
    if same_gpu(m.device, gpu.name):
        return f"measured on {m.device}"
    return f"measured on {m.device}, priced as {gpu.name}"


def cost_rows(gpus: Mapping[str, Gpu], reports: Sequence[tuple[str | None, Measurement]], *,
              utilization: float = DEFAULT_UTILIZATION, rps_override: float | None = None,
              estimate_from: str | None = None) -> list[CostRow]:
    """One row per (GPU, report); with ``estimate_from``, ESTIMATE rows for the other GPUs."""
    if not 0 < utilization <= 1:
        raise CostInputError(f"--utilization must be in (0, 1], got {utilization:g}")
    if rps_override is not None and (rps_override <= 0 or len(reports) > 1):
        raise CostInputError("--rps must be positive and goes with a single report")
    rows = []
    for name, m in reports:
        own = [g for g in gpus if same_gpu(m.device, g)]
        gpu_names = [name] if name else (own[:1] or list(gpus))
        for gpu_name in gpu_names:
            gpu = find_gpu(gpus, gpu_name)
            if rps_override is not None:
                rows.append(CostRow(gpu, rps_override, "--rps", False, utilization, m))
            elif name or len(gpu_names) == 1:
                rows.append(CostRow(gpu, m.rps, _measured_source(m, gpu), False, utilization, m))
            else:
                rows.append(CostRow(gpu, m.rps, f"measured on {m.device or 'an unrecorded device'}, same RPS "
                                    "assumed for every GPU", False, utilization, m))
    if estimate_from:
        base_gpu = find_gpu(gpus, estimate_from)
        base = [r for r in rows if r.gpu.name == base_gpu.name]
        if not base:
            raise CostInputError(f"--estimate-from {estimate_from}: no report is for {base_gpu.name}; "
                                 f"pass {base_gpu.name}=REPORT or --gpu {base_gpu.name}")
        covered = {r.gpu.name for r in rows}
        for gpu in gpus.values():
            if gpu.name not in covered:
                factor = gpu.relative_throughput(base_gpu)
                rows.append(CostRow(gpu, base[0].rps * factor,
                                    f"ESTIMATE: {base_gpu.name} x {factor:.2f} (datasheet ratio)",
                                    True, utilization, base[0].measurement))
    return rows


def recommend(rows: Sequence[CostRow]) -> CostRow | None:
    """The cheapest measured row whose report met its SLO (or stated none); estimates never count."""
    eligible = [r for r in rows if not r.estimate and r.slo_passed is not False]
    return min(eligible, key=lambda r: r.usd_per_million_at_target, default=None)


def format_table(rows: Sequence[CostRow]) -> str:
    """A plain-text table, one line per row."""
    pct = f"{rows[0].utilization:.0%}" if rows else ""
    header = ("GPU", "RPS", "GPU-h/M", "$/GPU-h", "$/M busy", f"$/M @{pct}", "p99 ms", "SLO",
              "throughput source")
    lines = [header]
    for r in rows:
        p99 = r.measurement.p99_ms if r.measurement and not r.estimate else None
        slo = {True: "PASS", False: "FAIL", None: "n/a"}[r.slo_passed]
        lines.append((r.gpu.name, f"{r.rps:,.1f}", f"{r.gpu_hours_per_million:.4f}",
                      f"{r.gpu.hourly_usd:.3f}", f"{r.usd_per_million:.4f}",
                      f"{r.usd_per_million_at_target:.4f}", "-" if p99 is None else f"{p99:.1f}",
                      slo, r.source))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
                     for line in lines)


def _parse_report_args(items: Sequence[str], gpu: str | None) -> list[tuple[str | None, Path]]:
    parsed: list[tuple[str | None, Path]] = []
    for item in items:
        name, sep, path = item.partition("=")
        parsed.append((name, Path(path)) if sep and name and not Path(item).exists() else (None, Path(item)))
    if gpu:
        if len(parsed) != 1 or parsed[0][0]:
            raise CostInputError("--gpu goes with one plain REPORT; for several, write GPU=REPORT for each")
        parsed = [(gpu, parsed[0][1])]
    return parsed


DESCRIPTION = ("Turn a load test's measured RPS into GPU-hours and dollars per million requests, and "
               "recommend the cheapest GPU that met its SLO.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``cost`` command's arguments (the loadtest CLI adds the global flags)."""
    parser.add_argument("reports", nargs="+", metavar="[GPU=]REPORT",
                        help="a load test's report folder or its summary.json; prefix GPU= to say where it was "
                        "measured")
    parser.add_argument("--gpu", metavar="NAME", help="the GPU to price a single REPORT on (e.g. L4)")
    parser.add_argument("--rps", type=float, metavar="N", help="use this throughput instead of the report's")
    parser.add_argument("--utilization", type=float, default=DEFAULT_UTILIZATION, metavar="U",
                        help="target average utilisation for the second price column (default: %(default)s)")
    parser.add_argument("--estimate-from", metavar="GPU",
                        help="add ESTIMATE rows for the other GPUs, scaled from this GPU's report")
    parser.add_argument("--prices", type=Path, default=PRICES_FILE, metavar="FILE",
                        help="price table (default: loadtest/cost/gpus.toml)")
    modal = parser.add_argument_group(
        "serverless (--platform modal)",
        "Containers, $/hour, $ per 1M requests and the warm pool's idle cost for a target rate on Modal, "
        "from per-second prices ([modal] in the price table); a rate not measured on that GPU is an "
        "ESTIMATE with its assumption")
    modal.add_argument("--platform", choices=["cloud", "modal"], default="cloud",
                       help="cloud: GPU-hour prices per GPU (default); modal: plan a Modal deployment")
    modal.add_argument("--target-rps", type=float, metavar="N", help="requests/s the deployment must serve")
    modal.add_argument("--min-containers", type=int, default=1, metavar="N",
                       help="warm containers kept up with no traffic (default: %(default)s)")


def _run_modal(args: argparse.Namespace) -> int:
    from tritonstack.loadtest.cost.modal import format_plan, load_modal_prices, plan

    if len(args.reports) != 1:
        raise CostInputError("--platform modal prices one [GPU=]REPORT (the summary.json of a load test; "
                             "GPU= says it was measured on that GPU)")
    if not args.gpu:
        raise CostInputError("--platform modal needs --gpu NAME (for example L4)")
    if args.target_rps is None:
        raise CostInputError("--platform modal needs --target-rps N, the rate to serve")
    measured_on, _, path = args.reports[0].rpartition("=")
    measurement = read_report(Path(path))
    if measured_on:
        measurement = dataclasses.replace(measurement, device=measured_on)
    result = plan(measurement, load_modal_prices(args.prices), gpu=args.gpu,
                  target_rps=args.target_rps, utilization=args.utilization,
                  min_containers=args.min_containers, rps=args.rps)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_plan(result))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Compute, print, and return the exit code."""
    if args.platform == "modal":
        return _run_modal(args)
    gpus = load_prices(args.prices)
    reports = [(name, read_report(path)) for name, path in _parse_report_args(args.reports, args.gpu)]
    for name, _ in reports:
        if name:
            find_gpu(gpus, name)
    rows = cost_rows(gpus, reports, utilization=args.utilization, rps_override=args.rps,
                     estimate_from=args.estimate_from)
    best = recommend(rows)
    if args.json:
        print(json.dumps({"rows": [r.to_dict() for r in rows],
                          "recommendation": best.to_dict() if best else None}, indent=2))
    else:
        print(format_table(rows))
        foreign = sorted({r.measurement.device for r in rows if r.measurement and r.measurement.device
                          and not any(same_gpu(r.measurement.device, g) for g in gpus)})
        if foreign:
            print(f"note: throughput was measured on {', '.join(foreign)}, not on the GPU priced; measure on "
                  "the GPU (GPU=REPORT) or pass --rps for a real figure.")
        if any(r.estimate for r in rows):
            print("note: ESTIMATE rows scale a measurement by datasheet ratios (loadtest/gpus.toml); "
                  "they are not measurements and are never recommended.")
        if best:
            verdict = "met its SLO" if best.slo_passed else "no SLO verdict in the report"
            print(f"Recommendation: {best.gpu.name}: ${best.usd_per_million_at_target:.4f} per million "
                  f"requests at {best.utilization:.0%} utilisation "
                  f"({best.gpu_hours_per_million:.4f} GPU-hours/M; {verdict})")
        else:
            print("No recommendation: no supplied report met its SLO.")
    return EXIT_OK if best else EXIT_NO_SLO_MET


