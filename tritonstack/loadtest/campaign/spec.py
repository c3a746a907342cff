"""Campaign files (TOML or YAML) as typed, validated dataclasses.

A campaign says *what* to send (``traffic``: models or demo pipelines with weights), *how much*
and *when* (``stages``, a ``steps`` staircase, or a ``find_max`` search) and *what must hold*
(``slo``). Everything is checked here, before any server or Locust starts, and every error
names the key and what to write instead. See docs/loadtest.md for the full reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tritonstack.loadtest.campaign.slo import Slo, limit
from tritonstack.loadtest.errors import CampaignError

CAMPAIGNS_DIR = Path(__file__).resolve().parent.parent / "campaigns"
PIPELINES = ("classify_digit", "embed")
DATATYPES = ("BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES")
MAX_DURATION_S = 24 * 3600
# Bounds that catch typos and runaway values before any load is sent (a 2-core generator tops
# out near 2,000 rps; these leave room for a distributed run).
MAX_RPS = 100_000
MAX_USERS = 10_000
MAX_BATCH = 4096
MAX_POOL = 100_000
# Stated input shifts of the demo pipelines, for drift campaigns (loadtest/payloads.py):
# long-texts: each text is 6 evaluation sentences joined (about 6x the tokens);
# inverted: digits drawn light-on-dark (16 - pixel); noisy: Gaussian noise (sd 4) on the pixels.
SHIFTS = {"embed": ("long-texts",), "classify_digit": ("inverted", "noisy")}
MAX_POOL_ROWS = 1_000_000  # pool x batch rows held in memory per traffic entry
# A rate relative to the capacity of the server under test (campaign/sizing.py): "3x capacity".
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*x\s*capacity\s*$")
MAX_FACTOR = 20.0


def relative_factor(where: str, value: Any) -> float | None:
    """The factor of ``"3x capacity"`` (3.0); None for a number; CampaignError for other text."""
    if not isinstance(value, str):
        return None
    match = _RELATIVE.match(value)
    if not match:
        raise CampaignError(f"{where} must be requests/s or a multiple of the capacity such as "
                            f"\"0.5x capacity\", got {value!r}")
    factor = float(match.group(1))
    if not 0 < factor <= MAX_FACTOR:
        raise CampaignError(f"{where}: the multiple of the capacity must be in (0, {MAX_FACTOR:g}], got {value!r}")
    return factor


def check_metrics_url(url: Any, where: str = "--metrics") -> str | None:
    """An http(s) URL of Triton's metrics, or None (no metrics); anything else is refused."""
    import urllib.parse

    if url is None or url == "":
        return None
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CampaignError(f"{where} {url!r}: give Triton's metrics endpoint as http(s)://HOST:PORT/metrics "
                            "('' for none)")
    return str(url)


def _check_keys(where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
            raise CampaignError(f"{where}: unknown key {key!r}{hint}")


def _number(where: str, value: Any, *, minimum: float = 0.0, strict: bool = True,
            integer: bool = False, maximum: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CampaignError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise CampaignError(f"{where} must be a finite number, got {value!r}")
    if maximum is not None and value > maximum:
        raise CampaignError(f"{where} must be <= {maximum:g}, got {value!r}")
    if integer and not float(value).is_integer():
        raise CampaignError(f"{where} must be a whole number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise CampaignError(f"{where} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return int(value) if integer else float(value)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A fixed input tensor: every element is ``value`` (or random in [0, value) with ``random``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    value: float | str = 1.0
    random: bool = False

    @classmethod
    def from_dict(cls, where: str, name: str, data: Mapping[str, Any]) -> InputSpec:
        _check_keys(where, data, ("datatype", "shape", "value", "random"))
        datatype = str(data.get("datatype", "")).upper()
        if datatype not in DATATYPES:
            raise CampaignError(f"{where}.datatype must be one of {', '.join(DATATYPES)}, "
                                f"got {data.get('datatype')!r}")
        shape = data.get("shape")
        if not isinstance(shape, list) or not shape or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise CampaignError(f"{where}.shape must be a list of positive integers with the batch "
                                f"dimension first (for example [1, 4]), got {shape!r}")
        value = data.get("value", "text" if datatype == "BYTES" else 1.0)
        if datatype != "BYTES":
            _number(f"{where}.value", value, minimum=float("-inf"), strict=False)
        return cls(name, datatype, tuple(shape), value, bool(data.get("random", False)))


@dataclasses.dataclass(frozen=True)
class Traffic:
    """One kind of request in the mix: a demo pipeline with real inputs, or a model with fixed ones."""

    model: str
    weight: float = 1.0
    pipeline: str | None = None
    label: str | None = None
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[str, ...] = ()
    batch: int = 1
    pool: int = 256
    version: str = ""
    shift: str | None = None  # a stated distribution shift of a demo pipeline's inputs (SHIFTS)
    # embed only: texts drawn from `distinct` different queries with Zipf(s = zipf) frequencies,
    # the repetition a response cache meets in front of search or chat traffic
    zipf: float | None = None
    distinct: int = 50_000
    # requests carry the request parameter `key_parameter` = "user-<k>" for one of `keys` simulated
    # users (each pool row belongs to one user): the sticky key of a rollout split (python -m tritonstack.rollout)
    keys: int | None = None
    key_parameter: str = "rollout_key"

    def __post_init__(self) -> None:
        if self.pool * self.batch > MAX_POOL_ROWS:
            raise CampaignError(f"traffic {self.stats_name!r}: pool ({self.pool}) x batch ({self.batch}) "
                                f"is {self.pool * self.batch:,} rows held in memory; keep it <= "
                                f"{MAX_POOL_ROWS:,}")

    @property
    def stats_name(self) -> str:
        """The name its requests have in Locust's statistics and in SLO scopes."""
        return self.label or self.model

    @classmethod
    def from_dict(cls, where: str, data: Mapping[str, Any]) -> Traffic:
        _check_keys(where, data, ("model", "pipeline", "weight", "label", "inputs", "outputs", "batch",
                                  "pool", "version", "shift", "zipf", "distinct", "keys", "key_parameter"))
        pipeline = data.get("pipeline")
        if pipeline is not None and pipeline not in PIPELINES:
            raise CampaignError(f"{where}.pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
        model = data.get("model", pipeline)
        if not model or not isinstance(model, str):
            raise CampaignError(f"{where} needs `pipeline = \"classify_digit\"|\"embed\"` or "
                                "`model = \"NAME\"` with [inputs]")
        raw_inputs = data.get("inputs", {})
        if not isinstance(raw_inputs, Mapping):
            raise CampaignError(f"{where}.inputs must be a table of NAME = {{datatype, shape, value}}")
        if pipeline is None and not raw_inputs:
            raise CampaignError(f"{where}: model {model!r} is not a demo pipeline, so it needs "
                                f"[inputs] (for example INPUT = {{ datatype = \"FP32\", shape = [1, 4] }})")
        if pipeline is not None and raw_inputs:
            raise CampaignError(f"{where}: pipeline {pipeline!r} draws real inputs; remove `inputs`")
        shift = data.get("shift")
        if shift is not None and shift not in SHIFTS.get(pipeline or "", ()):
            choices = ", ".join(f"{p}: {', '.join(s)}" for p, s in SHIFTS.items())
            raise CampaignError(f"{where}.shift {shift!r} is not a shift of {pipeline or model!r}; "
                                f"shifts exist for demo pipelines only ({choices})")
        zipf = data.get("zipf")
        if zipf is not None:
            if pipeline != "embed" or shift is not None:
                raise CampaignError(f"{where}.zipf draws embed queries; use it with pipeline = \"embed\" "
                                    "and no shift")
            zipf = _number(f"{where}.zipf", zipf, maximum=5)
        elif "distinct" in data:
            raise CampaignError(f"{where}.distinct sets how many queries zipf draws from; add zipf = 1.0")
        inputs = tuple(InputSpec.from_dict(f"{where}.inputs.{name}", name, spec)
                       for name, spec in raw_inputs.items())
        outputs = data.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise CampaignError(f"{where}.outputs must be a list of output names, got {outputs!r}")
        return cls(
            model=model, weight=_number(f"{where}.weight", data.get("weight", 1.0)), pipeline=pipeline,
            label=data.get("label"), inputs=inputs, outputs=tuple(outputs),
            batch=_number(f"{where}.batch", data.get("batch", 1), minimum=1, strict=False, integer=True,
                          maximum=MAX_BATCH),
            pool=_number(f"{where}.pool", data.get("pool", 256), minimum=1, strict=False, integer=True,
                         maximum=MAX_POOL),
            version=str(data.get("version", "")), shift=shift, zipf=zipf,
            distinct=_number(f"{where}.distinct", data.get("distinct", 50_000), minimum=2, strict=False,
                             integer=True, maximum=MAX_POOL_ROWS),
            keys=(None if data.get("keys") is None else
                  _number(f"{where}.keys", data["keys"], minimum=1, strict=False, integer=True,
                          maximum=MAX_POOL_ROWS)),
            key_parameter=_key_parameter(f"{where}.key_parameter", data.get("key_parameter", "rollout_key")),
        )


def _key_parameter(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise CampaignError(f"{where} must be a parameter name such as \"rollout_key\", got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Stage:
    """``users`` users sending ``rps`` requests/s in total (None: as fast as responses come back).

    ``ramp`` moves users and rps linearly from the previous stage's values over the stage;
    ``measure`` counts the stage (after ``warmup_s``) in the SLO window and the report's table;
    ``window_s`` records it as consecutive windows of that length (a time series, for soaks).
    """

    name: str
    duration_s: float
    users: int
    rps: float | None = None
    spawn_rate: float | None = None
    ramp: bool = False
    measure: bool = True
    warmup_s: float = 0.0
    window_s: float | None = None
    # ``rps = "3x capacity"``: rps is None until the campaign is sized (campaign/sizing.py)
    capacity_factor: float | None = None

    @classmethod
    def from_dict(cls, where: str, data: Mapping[str, Any], index: int) -> Stage:
        _check_keys(where, data, ("name", "duration_s", "users", "rps", "spawn_rate", "ramp", "measure",
                                  "warmup_s", "window_s"))
        for key in ("duration_s", "users"):
            if key not in data:
                raise CampaignError(f"{where} needs `{key}`")
        duration = _number(f"{where}.duration_s", data["duration_s"])
        warmup = _number(f"{where}.warmup_s", data.get("warmup_s", 0.0), strict=False)
        if warmup >= duration:
            raise CampaignError(f"{where}.warmup_s ({warmup:g}) must be shorter than duration_s "
                                f"({duration:g})")
        rps = data.get("rps")
        spawn = data.get("spawn_rate")
        window = data.get("window_s")
        if window is not None and not 1 <= _number(f"{where}.window_s", window) <= duration:
            raise CampaignError(f"{where}.window_s ({window:g}) must be between 1 and duration_s "
                                f"({duration:g})")
        factor = relative_factor(f"{where}.rps", rps)
        return cls(
            name=str(data.get("name", f"stage{index + 1}")), duration_s=duration,
            users=_number(f"{where}.users", data["users"], minimum=1, strict=False, integer=True,
                          maximum=MAX_USERS),
            rps=None if rps is None or factor else _number(f"{where}.rps", rps, maximum=MAX_RPS),
            capacity_factor=factor,
            spawn_rate=None if spawn is None else _number(f"{where}.spawn_rate", spawn, maximum=MAX_USERS),
            ramp=bool(data.get("ramp", False)), measure=bool(data.get("measure", True)), warmup_s=warmup,
            window_s=None if window is None else float(window),
        )


def _steps(data: Mapping[str, Any]) -> list[Stage]:
    """``[steps]``: a staircase of constant-rate stages, each measured after its warm-up."""
    where = "[steps]"
    _check_keys(where, data, ("users", "start_rps", "stop_rps", "step_rps", "duration_s", "warmup_s",
                              "spawn_rate"))
    for key in ("users", "start_rps", "stop_rps", "step_rps", "duration_s"):
        if key not in data:
            raise CampaignError(f"{where} needs `{key}`")
    start = _number(f"{where}.start_rps", data["start_rps"], maximum=MAX_RPS)
    stop = _number(f"{where}.stop_rps", data["stop_rps"], maximum=MAX_RPS)
    step = _number(f"{where}.step_rps", data["step_rps"], maximum=MAX_RPS)
    if stop < start:
        raise CampaignError(f"{where}.stop_rps ({stop:g}) must be >= start_rps ({start:g})")
    if (stop - start) / step > 100:
        raise CampaignError(f"{where} makes more than 100 steps; raise step_rps")
    stages, rps = [], start
    while rps <= stop + 1e-9:
        stages.append(Stage.from_dict(where, {
            "name": f"{rps:g} rps", "users": data["users"], "rps": rps, "duration_s": data["duration_s"],
            "warmup_s": data.get("warmup_s", 0.0), **({"spawn_rate": data["spawn_rate"]}
                                                      if "spawn_rate" in data else {}),
        }, len(stages)))
        rps += step
    return stages


MAX_LEVELS = 20


@dataclasses.dataclass(frozen=True)
class Concurrency:
    """``[concurrency]``: closed-loop levels, each a measured stage of ``levels[i]`` users.

    A user sends its next request as soon as it has the last one's answer or error: no pacing, no
    retries, no back-off, the callers an overloaded server meets. The report gives goodput and
    accepted p99 per level and the saturating level: the lowest level whose goodput is at least
    ``1 - saturation_tolerance`` of the peak (loadtest/goodput.py).
    """

    levels: tuple[int, ...]
    seconds_per_level: float
    warmup_s: float = 3.0
    saturation_tolerance: float = 0.05
    spawn_rate: float | None = None

    def stages(self) -> tuple[Stage, ...]:
        """One measured closed-loop stage per level, in order."""
        return tuple(Stage(name=f"{n} users", duration_s=self.seconds_per_level, users=n,
                           spawn_rate=self.spawn_rate, warmup_s=self.warmup_s) for n in self.levels)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Concurrency:
        where = "[concurrency]"
        if not isinstance(data, Mapping):
            raise CampaignError(f"{where} must be a table (levels = [4, 8, 16], seconds_per_level = 10)")
        _check_keys(where, data, tuple(f.name for f in dataclasses.fields(cls)))
        for key in ("levels", "seconds_per_level"):
            if key not in data:
                raise CampaignError(f"{where} needs `{key}`")
        levels = _levels(f"{where}.levels", data["levels"])
        seconds = _number(f"{where}.seconds_per_level", data["seconds_per_level"], maximum=MAX_DURATION_S)
        warmup = _number(f"{where}.warmup_s", data.get("warmup_s", 3.0), strict=False)
        if warmup >= seconds:
            raise CampaignError(f"{where}.warmup_s ({warmup:g}) must be shorter than seconds_per_level "
                                f"({seconds:g})")
        tolerance = _number(f"{where}.saturation_tolerance", data.get("saturation_tolerance", 0.05),
                            maximum=0.5)
        spawn = data.get("spawn_rate")
        return cls(levels=levels, seconds_per_level=seconds, warmup_s=warmup, saturation_tolerance=tolerance,
                   spawn_rate=None if spawn is None else _number(f"{where}.spawn_rate", spawn,
                                                                  maximum=MAX_USERS))


def _levels(where: str, value: Any) -> tuple[int, ...]:
    # increasing, so that the report's x axis and "the highest level" mean the same thing
    if not isinstance(value, list) or len(value) < 2:
        raise CampaignError(f"{where} must list at least 2 user counts, for example [4, 8, 16, 32, 64]; "
                            f"got {value!r}")
    if len(value) > MAX_LEVELS:
        raise CampaignError(f"{where} has {len(value)} levels; keep it <= {MAX_LEVELS}")
    levels = tuple(_number(f"{where}[{i}]", v, minimum=1, strict=False, integer=True, maximum=MAX_USERS)
                   for i, v in enumerate(value))
    if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
        raise CampaignError(f"{where} must increase strictly, got {list(levels)}")
    return levels


@dataclasses.dataclass(frozen=True)
class FindMax:
    """Search for the highest sustained RPS that meets the SLOs: steps up, then bisects.

    A step passes when its p99 is under the campaign's ``p99_ms`` SLO, its error rate is within the
    ``error_rate`` SLO (zero when none is given) and it achieved ``min_achieved`` of its target.
    """

    users: int
    start_rps: float
    step_rps: float
    max_rps: float
    step_s: float = 10.0
    warmup_s: float = 3.0
    bisect_rounds: int = 3
    min_achieved: float = 0.95
    spawn_rate: float | None = None

    @property
    def max_duration_s(self) -> float:
        """Upper bound on the search's length: every step plus every bisection round."""
        steps = int((self.max_rps - self.start_rps) // self.step_rps) + 1
        return (steps + self.bisect_rounds) * self.step_s

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FindMax:
        where = "[find_max]"
        _check_keys(where, data, tuple(f.name for f in dataclasses.fields(cls)))
        for key in ("users", "start_rps", "step_rps", "max_rps"):
            if key not in data:
                raise CampaignError(f"{where} needs `{key}`")
        spec = cls(
            users=_number(f"{where}.users", data["users"], minimum=1, strict=False, integer=True,
                          maximum=MAX_USERS),
            start_rps=_number(f"{where}.start_rps", data["start_rps"], maximum=MAX_RPS),
            step_rps=_number(f"{where}.step_rps", data["step_rps"], maximum=MAX_RPS),
            max_rps=_number(f"{where}.max_rps", data["max_rps"], maximum=MAX_RPS),
            step_s=_number(f"{where}.step_s", data.get("step_s", 10.0)),
            warmup_s=_number(f"{where}.warmup_s", data.get("warmup_s", 3.0), strict=False),
            bisect_rounds=_number(f"{where}.bisect_rounds", data.get("bisect_rounds", 3), strict=False,
                                  integer=True),
            min_achieved=_number(f"{where}.min_achieved", data.get("min_achieved", 0.95)),
            spawn_rate=None if data.get("spawn_rate") is None else _number(f"{where}.spawn_rate",
                                                                          data["spawn_rate"]),
        )
        if spec.max_rps < spec.start_rps:
            raise CampaignError(f"{where}.max_rps must be >= start_rps")
        if spec.warmup_s >= spec.step_s:
            raise CampaignError(f"{where}.warmup_s must be shorter than step_s")
        if (spec.max_rps - spec.start_rps) / spec.step_rps > 100:
            raise CampaignError(f"{where} makes more than 100 steps; raise step_rps")
        return spec


@dataclasses.dataclass(frozen=True)
class CapacityProbe:
    """``[capacity]``: how the capacity of a campaign with relative rates is measured when neither
    ``--capacity`` nor ``--capacity-from`` gives it: a closed-loop window of ``users`` (the
    ceiling C), then a find-max of the same traffic from 0.5 C to 1.25 C in steps of 0.25 C with
    ``bisect_rounds`` bisections, each step ``step_s`` long; a step passes when its p99 is under
    ``p99_ms`` and nothing but shedding failed (campaign/sizing.py). Bounded by ``max_s``."""

    users: int = 64
    step_s: float = 8.0
    warmup_s: float = 3.0
    bisect_rounds: int = 2
    p99_ms: float = 100.0

    @property
    def max_s(self) -> float:
        """Upper bound on the probe's load: the ceiling window plus every step and bisection."""
        return self.step_s * (1 + 4 + self.bisect_rounds)

    @classmethod
    def from_dict(cls, data: Any) -> CapacityProbe:
        where = "[capacity]"
        if not isinstance(data, Mapping):
            raise CampaignError(f"{where} must be a table (users = 64, step_s = 8)")
        _check_keys(where, data, tuple(f.name for f in dataclasses.fields(cls)))
        probe = cls(
            users=_number(f"{where}.users", data.get("users", 64), minimum=1, strict=False, integer=True,
                          maximum=MAX_USERS),
            step_s=_number(f"{where}.step_s", data.get("step_s", 8.0), maximum=600),
            warmup_s=_number(f"{where}.warmup_s", data.get("warmup_s", 3.0), strict=False),
            bisect_rounds=_number(f"{where}.bisect_rounds", data.get("bisect_rounds", 2), strict=False,
                                  integer=True, maximum=6),
            p99_ms=_number(f"{where}.p99_ms", data.get("p99_ms", 100.0), maximum=60_000),
        )
        if probe.warmup_s >= probe.step_s:
            raise CampaignError(f"{where}.warmup_s must be shorter than step_s")
        return probe


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the load goes; the command line (``--grpc``, ``--metrics``, ``--start-server``) overrides it."""

    grpc: str = "127.0.0.1:8001"
    metrics: str | None = "http://127.0.0.1:8002/metrics"
    timeout_s: float = 10.0


@dataclasses.dataclass(frozen=True)
class Campaign:
    """A validated campaign; :func:`load` reads one from a file, :meth:`to_dict` feeds the locustfile."""

    name: str
    traffic: tuple[Traffic, ...]
    slos: tuple[Slo, ...] = ()
    stages: tuple[Stage, ...] = ()
    find_max: FindMax | None = None
    target: Target = Target()
    processes: int = 1
    description: str = ""
    # the response cache of the Triton the runner starts itself (--model-repository); 0: none
    response_cache_mb: int = 0
    concurrency: Concurrency | None = None  # the sweep its stages were made from ([concurrency])
    # rates relative to the server's capacity (campaign/sizing.py): SLOs written against it, kept
    # as (SLO text before the number, factor) until the campaign is sized, and how to measure it
    capacity_slos: tuple[tuple[str, float], ...] = ()
    capacity_probe: CapacityProbe = CapacityProbe()

    def __post_init__(self) -> None:
        if not self.traffic:
            raise CampaignError(f"campaign {self.name!r} has no [[traffic]]: add at least one model "
                                "or pipeline to send requests to")
        if bool(self.stages) == bool(self.find_max):
            raise CampaignError(f"campaign {self.name!r} needs exactly one of [[stages]], [steps], "
                                "[concurrency] or [find_max]")
        names = [t.stats_name for t in self.traffic]
        if len(set(names)) != len(names):
            raise CampaignError(f"campaign {self.name!r}: traffic entries share a name ({names}); "
                                "give each a distinct `label`")
        known = {*names}
        for slo in self.slos:
            if slo.scope and slo.scope not in known:
                raise CampaignError(f"SLO '{slo}' names {slo.scope!r}, which is not in the traffic "
                                    f"({', '.join(sorted(known))})")
        if self.capacity_slos and not self.sized_by_capacity:
            raise CampaignError(f"campaign {self.name!r}: an SLO relative to the capacity needs stage rates "
                                "relative to it too (rps = \"0.5x capacity\")")
        if self.find_max and limit(list(self.slos), "p99_ms") is None:
            raise CampaignError(f"campaign {self.name!r}: [find_max] needs a p99 SLO, for example "
                                "slo = [\"p99_ms < 100\", \"error_rate <= 0\"]")
        if self.duration_s > MAX_DURATION_S:
            raise CampaignError(f"campaign {self.name!r} lasts {self.duration_s:g} s; the limit is "
                                f"{MAX_DURATION_S} s")

    @property
    def duration_s(self) -> float:
        """The planned length of the load (an upper bound for find-max)."""
        if self.find_max:
            return self.find_max.max_duration_s
        return sum(s.duration_s for s in self.stages)

    @property
    def sized_by_capacity(self) -> bool:
        """Some rate is a multiple of the capacity: the campaign runs once sized (campaign/sizing.py)."""
        return any(s.capacity_factor is not None for s in self.stages)

    @property
    def resolved(self) -> bool:
        """Every rate is a number (nothing left relative to the capacity)."""
        return not self.capacity_slos and all(s.capacity_factor is None or s.rps is not None
                                              for s in self.stages)

    @property
    def is_step(self) -> bool:
        """Several measured constant-rate stages: the report plots latency against throughput."""
        return bool(self.find_max) or sum(1 for s in self.stages if s.measure and s.rps) >= 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (SLOs as text), read back by :meth:`from_dict` in the Locust processes."""
        data = dataclasses.asdict(self)
        data["slos"] = [str(s) for s in self.slos]
        data["capacity_slos"] = [list(pair) for pair in self.capacity_slos]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Campaign:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=data["name"], description=data.get("description", ""),
            traffic=tuple(Traffic(**{**t, "inputs": tuple(InputSpec(**{**i, "shape": tuple(i["shape"])})
                                                           for i in t["inputs"]),
                                     "outputs": tuple(t["outputs"])}) for t in data["traffic"]),
            slos=tuple(Slo.parse(s) for s in data["slos"]),
            stages=tuple(Stage(**s) for s in data["stages"]),
            find_max=FindMax(**data["find_max"]) if data.get("find_max") else None,
            target=Target(**data["target"]), processes=data.get("processes", 1),
            response_cache_mb=data.get("response_cache_mb", 0),
            concurrency=_concurrency_from_dict(data.get("concurrency")),
            capacity_slos=tuple((str(t), float(f)) for t, f in data.get("capacity_slos", ())),
            capacity_probe=CapacityProbe(**data.get("capacity_probe", {})),
        )


def _concurrency_from_dict(data: Mapping[str, Any] | None) -> Concurrency | None:
    return None if not data else Concurrency(**{**data, "levels": tuple(data["levels"])})


def parse(data: Mapping[str, Any], name: str) -> Campaign:
    """Validate a campaign's parsed content (from TOML, YAML or code)."""
    if not isinstance(data, Mapping):
        raise CampaignError(f"campaign {name!r} must be a table of keys, got {type(data).__name__}")
    _check_keys(f"campaign {name!r}", data, ("name", "description", "traffic", "stages", "steps",
                                             "concurrency", "find_max", "slo", "target", "processes",
                                             "response_cache_mb", "capacity"))
    traffic = data.get("traffic", [])
    if not isinstance(traffic, list):
        raise CampaignError("`traffic` must be a list of tables ([[traffic]] in TOML)")
    stages_raw = data.get("stages", [])
    if not isinstance(stages_raw, list):
        raise CampaignError("`stages` must be a list of tables ([[stages]] in TOML)")
    plans = [key for key, given in (("[[stages]]", bool(stages_raw)), ("[steps]", "steps" in data),
                                    ("[concurrency]", "concurrency" in data)) if given]
    if len(plans) > 1:
        raise CampaignError(f"use either {' or '.join(plans)}, not {'both' if len(plans) == 2 else 'all'}")
    stages = [Stage.from_dict(f"stages[{i}]", s, i) for i, s in enumerate(stages_raw)]
    if "steps" in data:
        stages = _steps(data["steps"])
    concurrency = Concurrency.from_dict(data["concurrency"]) if "concurrency" in data else None
    if concurrency is not None:
        stages = list(concurrency.stages())
    slo_raw = data.get("slo", [])
    if isinstance(slo_raw, str) or not isinstance(slo_raw, list):
        raise CampaignError("`slo` must be a list of strings, for example [\"p99_ms < 100\"]")
    slo_raw, capacity_slos = _split_capacity_slos(slo_raw)
    target_raw = data.get("target", {})
    _check_keys("[target]", target_raw, ("grpc", "metrics", "timeout_s"))
    target = Target(grpc=str(target_raw.get("grpc", Target.grpc)),
                    metrics=check_metrics_url(target_raw.get("metrics", Target.metrics) or None,
                                              "[target].metrics"),
                    timeout_s=_number("[target].timeout_s", target_raw.get("timeout_s", Target.timeout_s)))
    return Campaign(
        name=str(data.get("name", name)), description=str(data.get("description", "")),
        traffic=tuple(Traffic.from_dict(f"traffic[{i}]", t) for i, t in enumerate(traffic)),
        slos=tuple(Slo.parse(s) for s in slo_raw), stages=tuple(stages),
        find_max=FindMax.from_dict(data["find_max"]) if "find_max" in data else None,
        target=target,
        processes=_number("processes", data.get("processes", 1), minimum=1, strict=False, integer=True),
        response_cache_mb=_number("response_cache_mb", data.get("response_cache_mb", 0), minimum=0,
                                  strict=False, integer=True, maximum=65_536),
        concurrency=concurrency, capacity_slos=capacity_slos,
        capacity_probe=CapacityProbe.from_dict(data.get("capacity", {})),
    )


_CAPACITY_SLO = re.compile(r"^(?P<head>.*?)(?P<factor>\d+(?:\.\d*)?|\.\d+)\s*x\s*capacity\s*$")


def _split_capacity_slos(raw: list[Any]) -> tuple[list[Any], tuple[tuple[str, float], ...]]:
    """SLOs with a threshold relative to the capacity (``"max(rps) >= 2.4x capacity"``) apart from
    the others; each is checked now with a placeholder number, and judged once sized."""
    plain, relative = [], []
    for text in raw:
        match = _CAPACITY_SLO.match(text) if isinstance(text, str) else None
        if match is None:
            plain.append(text)
            continue
        factor = relative_factor(f"SLO {text!r}", f"{match['factor']}x capacity")
        Slo.parse(match["head"] + "1")  # the same checks as any SLO
        relative.append((match["head"], factor))
    return plain, tuple(relative)


def resolve_path(ref: str | Path) -> Path:
    """A campaign file path, or the name of a bundled campaign (``smoke`` -> campaigns/smoke.toml)."""
    path = Path(ref)
    if path.is_file():
        return path
    for suffix in (".toml", ".yaml", ".yml"):
        bundled = CAMPAIGNS_DIR / f"{ref}{suffix}"
        if bundled.is_file():
            return bundled
    names = sorted(p.stem for p in CAMPAIGNS_DIR.glob("*.toml"))
    close = difflib.get_close_matches(str(ref), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise CampaignError(f"campaign {str(ref)!r} is neither a file nor a bundled campaign; {hint}"
                        f"bundled: {', '.join(names)}")


def load(ref: str | Path) -> Campaign:
    """Read and validate a campaign from a TOML/YAML file or a bundled campaign's name."""
    path = resolve_path(ref)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise CampaignError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    except ImportError:
        raise CampaignError(f"{path}: YAML campaigns need PyYAML (pip install pyyaml), or use TOML") from None
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        raise CampaignError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse(data, path.stem)
    except CampaignError as exc:
        raise CampaignError(f"{path}: {exc}") from None
