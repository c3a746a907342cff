"""``python -m tritonstack.loadtest cost REPORT --platform modal --gpu L4 --target-rps N``: Modal sizing and cost.

From a load-test report's measured throughput per container, for a target request rate:

    containers        = ceil(target_rps / (rps_per_container * utilization)), at least min_containers
    $/hour            = containers * 3600 * (gpu $/s + cpu_cores * cpu $/s + memory_gib * mem $/s)
    $ per 1M requests = $/hour / (target_rps * 3600) * 1e6
    idle $/hour       = min_containers * the same per-container rate (the warm pool, no traffic)

Per-second prices live in ``loadtest/cost/gpus.toml`` (``[modal]``, with their date and source).
Where the report was not measured on that GPU, the figures are labelled ESTIMATE with the
assumption they rest on: that one container on the GPU sustains the report's rate.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path
from typing import Any

from tritonstack.loadtest.cost.cloud import PRICES_FILE, CostInputError, Measurement, same_gpu

#: What one container of docker/modal/app.py asks for besides its GPU.
DEFAULT_CPU_CORES = 4.0
DEFAULT_MEMORY_GIB = 16.0


@dataclasses.dataclass(frozen=True)
class ModalPrices:
    gpu_second_usd: dict[str, float]
    cpu_core_second_usd: float
    memory_gib_second_usd: float
    as_of: str
    source: str


def load_modal_prices(path: Path = PRICES_FILE) -> ModalPrices:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CostInputError(f"price file {path} cannot be read: {exc}") from exc
    modal: Any = data.get("modal")
    if not isinstance(modal, dict) or not isinstance(modal.get("gpus"), dict) or not modal["gpus"]:
        raise CostInputError(f"price file {path} has no [modal] table with [modal.gpus] per-second prices")
    gpus = {}
    for name, price in modal["gpus"].items():
        if not isinstance(price, int | float) or isinstance(price, bool) or not 0 < price < 1:
            raise CostInputError(f"[modal.gpus].{name} must be a price in $ per second, got {price!r}")
        gpus[name] = float(price)
    rates = []
    for key in ("cpu_core_second_usd", "memory_gib_second_usd"):
        value = modal.get(key, 0.0)
        if not isinstance(value, int | float) or value < 0:
            raise CostInputError(f"[modal].{key} must be a price >= 0 in $ per second, got {value!r}")
        rates.append(float(value))
    return ModalPrices(gpus, rates[0], rates[1], str(modal.get("as_of", "?")), str(modal.get("source", "?")))


@dataclasses.dataclass(frozen=True)
class ModalPlan:
    gpu: str
    rps_per_container: float
    target_rps: float
    utilization: float
    containers: int
    min_containers: int
    usd_per_container_hour: float
    usd_per_hour: float
    usd_per_million: float
    idle_usd_per_hour: float
    estimate: str | None  # the assumption, when the rate was not measured on this GPU
    prices: str

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def plan(measurement: Measurement, prices: ModalPrices, *, gpu: str, target_rps: float,
         utilization: float = 0.6, min_containers: int = 1, cpu_cores: float = DEFAULT_CPU_CORES,
         memory_gib: float = DEFAULT_MEMORY_GIB, rps: float | None = None) -> ModalPlan:
    """Size and price a Modal deployment of ``gpu`` for ``target_rps`` (see the module docstring)."""
    names = {n.lower(): n for n in prices.gpu_second_usd}
    if gpu.lower() not in names:
        close = difflib.get_close_matches(gpu, list(prices.gpu_second_usd), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise CostInputError(f"unknown Modal GPU {gpu!r}{hint} (priced: {', '.join(prices.gpu_second_usd)})")
    gpu = names[gpu.lower()]
    if not math.isfinite(target_rps) or target_rps <= 0:
        raise CostInputError(f"--target-rps must be a positive number of requests/s, got {target_rps:g}")
    if not 0 < utilization <= 1:
        raise CostInputError(f"--utilization must be in (0, 1], got {utilization:g}")
    if not 0 <= min_containers <= 1000:
        raise CostInputError(f"--min-containers must be 0..1000, got {min_containers}")
    per_container = rps if rps is not None else measurement.rps
    if not math.isfinite(per_container) or per_container <= 0:
        raise CostInputError(f"throughput per container must be positive, got {per_container:g}")
    containers = max(min_containers, math.ceil(target_rps / (per_container * utilization)))
    per_second = (prices.gpu_second_usd[gpu] + cpu_cores * prices.cpu_core_second_usd
                  + memory_gib * prices.memory_gib_second_usd)
    hour = per_second * 3600
    usd_per_hour = containers * hour
    measured_here = same_gpu(measurement.device, gpu)
    estimate = None if measured_here or rps is not None else (
        f"assumes one {gpu} container sustains {per_container:g} rps, the rate measured on "
        f"{measurement.device or 'an unrecorded device'}; measure on {gpu} (loadtest on the Modal endpoint) "
        "for a real figure")
    return ModalPlan(gpu, per_container, target_rps, utilization, containers, min_containers, hour,
                     usd_per_hour, usd_per_hour / (target_rps * 3600) * 1e6, min_containers * hour, estimate,
                     f"Modal list prices as of {prices.as_of} ({prices.source})")


def format_plan(p: ModalPlan) -> str:
    label = "ESTIMATE " if p.estimate else ""
    lines = [
        f"{label}Modal {p.gpu}: {p.containers} container(s) for {p.target_rps:g} rps at {p.utilization:.0%} "
        f"utilisation ({p.rps_per_container:g} rps per container)",
        f"  ${p.usd_per_hour:.2f}/hour, ${p.usd_per_million:.4f} per 1M requests; warm pool of "
        f"{p.min_containers}: ${p.idle_usd_per_hour:.2f}/hour idle (${p.usd_per_container_hour:.4f} per "
        "container-hour, GPU + CPU + memory)",
        f"  prices: {p.prices}",
    ]
    if p.estimate:
        lines.append(f"  ESTIMATE: {p.estimate}")
    return "\n".join(lines)
