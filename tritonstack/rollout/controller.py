"""The rollout's moves, in an order that fails no request:

* start: pin the served version and the candidate (``version_policy specific``) and load both
  (a candidate that does not load or misses its golden check is refused here, and the primary
  never stopped serving); write the router with the split at 0 %; point the ensembles at it;
* change the split: rewrite ``rollout.json`` (the routers read it within 0.1 s);
* finish (promote or roll back): send everything to the winner, wait for the routers to see it,
  serve the winner alone, point the ensembles back at the model, unload the router.

Every move is logged to ``rollout.jsonl`` before it is made, so ``status`` after a crash says
where things stand, and ``canary`` run again resumes at the step it had reached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from tritonstack.client import Client, ClientConfig, ClientError
from tritonstack.rollout import repository as repo
from tritonstack.rollout.errors import BadRequest, CheckFailed, NoServer
from tritonstack.rollout.metrics import Snapshot, scrape
from tritonstack.rollout.report import Margins, summarize, write
from tritonstack.rollout.slo import Breach, Slo, judge
from tritonstack.rollout.state import clear_split, log_event, read_log, read_split, write_split
from tritonstack.serving.split import REFRESH_S, Split

DEFAULT_MARGINS = Margins()
SETTLE_S = 3 * REFRESH_S + 0.2  # every router has re-read the split
LATENCY_WARMUP_S = 2.0


@dataclasses.dataclass(frozen=True)
class Target:
    repository: Path
    urls: tuple[str, ...] = ("127.0.0.1:8001",)
    metrics_urls: tuple[str, ...] = ("http://127.0.0.1:8002/metrics",)
    reports: Path = Path("reports/rollout")


@dataclasses.dataclass
class Outcome:
    promoted: bool
    breaches: list[Breach]
    report: Path | None = None


def parse_steps(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise BadRequest(f"--steps {text!r}: give percentages separated by commas, "
                         "e.g. 5,25,50,100") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise BadRequest(f"--steps {text!r}: percentages must rise, each above 0 and at most 100")
    if steps[-1] != 100:
        raise BadRequest(f"--steps {text!r}: the last step must be 100 (the candidate takes all the "
                         "traffic before it is promoted)")
    return steps


class Rollout:
    def __init__(self, target: Target, model: str, progress: Callable[[str], None] = print,
                 client: Client | None = None):
        self.target, self.model, self.progress = target, model, progress
        self.folder = Path(target.repository) / model
        repo.model_config(target.repository, model)  # refuses unknown models, ensembles, routers
        # TRITON_ACCESS_TOKEN, as every client of the control plane sends it (--restrict)
        self.client = client or Client(ClientConfig.from_env(urls=tuple(target.urls), timeout_s=120.0))
        self.router = repo.router_name(model)

    # -- what is there ---------------------------------------------------------------------
    def served(self) -> list[int]:
        try:
            states = self.client.list_models(timeout_s=10)
        except ClientError as exc:
            raise NoServer(f"no Triton answers at {', '.join(self.target.urls)} ({exc.status}); start "
                           "it (python -m tritonstack.server serve) or pass --url HOST:PORT") from None
        return sorted(int(s.version) for s in states
                      if s.name == self.model and s.state == "READY" and s.version.isdigit())

    def split(self) -> Split | None:
        return read_split(self.folder)

    def snapshot(self) -> Snapshot:
        return scrape(list(self.target.metrics_urls), self.model)

    def kind(self, split: Split) -> str:
        return repo.kind(self.target.repository, self.model, split.primary)

    # -- start -------------------------------------------------------------------------------
    def start(self, candidate: int, mode: str) -> Split:
        """Serve ``candidate`` beside the primary with the split at 0 %, or return the rollout of
        this candidate already under way."""
        existing = self.split()
        if existing is not None and existing.candidate is not None:
            if existing.candidate != candidate:
                raise BadRequest(f"a rollout of {self.model} v{existing.candidate} is under way "
                                 f"({existing.mode}); finish it first: python -m tritonstack.rollout promote|rollback "
                                 f"{self.model}")
            if (existing.mode == "shadow") != (mode == "shadow"):
                # a shadow candidate runs at the lowest CPU priority, which a serving one must not:
                # new instances of the model take the mode's priority (Triton swaps them in)
                existing = write_split(self.folder, dataclasses.replace(existing, mode=mode))
                log_event(self.folder, "mode", mode=mode)
                self.client.reload_model(self.model)
            self._wire(existing)  # completes a start that a killed controller left half-way
            return existing
        on_disk = repo.versions(self.target.repository, self.model)
        if candidate not in on_disk:
            raise BadRequest(f"{self.model} has no version {candidate} in {self.target.repository} "
                             f"(versions: {', '.join(map(str, on_disk)) or 'none'}); export it first")
        if len(on_disk) < 2:
            raise BadRequest(f"{self.model} has one version ({on_disk[0]}); a split needs a second: "
                             f"export one (python -m tritonstack.converters export ... --name {self.model})")
        served = self.served()
        if not served:
            raise BadRequest(f"{self.model} is not loaded on {', '.join(self.target.urls)}; load it "
                             f"first (python -m tritonstack.client load {self.model})")
        primary = served[-1]
        self._check_model_control()
        if candidate == primary:
            raise BadRequest(f"version {candidate} is the one {self.model} serves; pick another "
                             f"(versions: {', '.join(map(str, on_disk))})")
        split = write_split(self.folder, Split(self.model, primary, candidate, mode=mode))
        log_event(self.folder, "start", primary=primary, candidate=candidate, mode=mode)
        self._wire(split)
        return split

    def _wire(self, split: Split) -> None:
        """Route the ensembles through the router, then load the candidate beside the primary.

        In this order no request reaches the candidate beyond the split's weight at any moment:
        an ensemble asks for a model's newest loaded version, so loading the candidate first sent
        it every request until the router was wired. Each step is idempotent; a controller
        killed at any point leaves a state ``status`` reports and ``canary``/``rollback`` finish.
        """
        primary, candidate = split.primary, split.candidate
        assert candidate is not None
        if not (Path(self.target.repository) / self.router).is_dir():
            repo.write_router(self.target.repository, self.model, self.kind(split))
        self.client.load_model(self.router)
        wired = repo.ensembles_over(self.target.repository, self.model)
        for ensemble in wired:
            repo.rewire(self.target.repository, ensemble, self.model, self.router)
            self.client.load_model(ensemble)
        if wired:
            log_event(self.folder, "wired", router=self.router, ensembles=wired)
        if candidate in self.served():
            return
        repo.set_versions(self.target.repository, self.model, [primary, candidate])
        try:
            self.client.load_model(self.model)
        except ClientError as exc:
            reason = (exc.server_message or str(exc)).splitlines()[0]
            self._serve_alone(primary)
            clear_split(self.folder)
            log_event(self.folder, "refused", candidate=candidate, reason=reason)
            raise CheckFailed(f"candidate {self.model} v{candidate} did not load ({reason}); "
                              f"v{primary} still serves, untouched") from None
        routed = repo.ensembles_over(self.target.repository, self.router)
        self.progress(f"{self.model}: v{primary} (primary) and v{candidate} (candidate) served; "
                      f"{', '.join(routed) or 'no ensemble'} route through {self.router}")

    def _check_model_control(self) -> None:
        """Refuse before anything moves when Triton will not load on request: loading a model
        that is already loaded as it is on disk changes nothing in explicit mode."""
        try:
            self.client.load_model(self.model)
        except ClientError as exc:
            reason = (exc.server_message or str(exc)).splitlines()[0]
            raise NoServer(f"Triton at {', '.join(self.target.urls)} will not load models on request "
                           f"({reason}); start it with --model-control explicit (python -m tritonstack.server "
                           "serve does by default)") from None

    def _load_quietly(self, model: str) -> None:
        with contextlib.suppress(ClientError):  # the served versions are unchanged either way
            self.client.load_model(model)

    def pin(self) -> int:
        """Serve exactly the version served now, whatever is exported later (a new export, or a
        restart of Triton, would otherwise load the newest version)."""
        if self.split() is not None:
            raise BadRequest(f"a rollout of {self.model} is under way; it pins its own versions")
        served = self.served()
        if len(served) != 1:
            raise BadRequest(f"{self.model} serves versions {served or 'none'}; pin needs exactly one")
        self._check_model_control()
        repo.set_versions(self.target.repository, self.model, served)
        self.client.load_model(self.model)
        log_event(self.folder, "pinned", version=served[0])
        return served[0]

    # -- live changes ------------------------------------------------------------------------
    def set_split(self, weight: float | None = None, compare: float | None = None,
                  mode: str | None = None) -> Split:
        split = self.split()
        if split is None or split.candidate is None:
            raise BadRequest(f"no rollout of {self.model} is under way; start one with split, shadow "
                             "or canary")
        changes = {k: v for k, v in (("weight", weight), ("compare", compare), ("mode", mode))
                   if v is not None}
        split = write_split(self.folder, dataclasses.replace(split, **changes))
        log_event(self.folder, "split", weight=split.weight, compare=split.compare, mode=split.mode)
        time.sleep(SETTLE_S)
        return split

    # -- finish ------------------------------------------------------------------------------
    def finish(self, promote: bool, reason: str = "") -> int:
        """Serve the winner alone (the candidate when ``promote``); returns its version.
        Safe to run again after a crash half-way."""
        split = self.split()
        router_there = (Path(self.target.repository) / self.router).is_dir()
        if split is None and not router_there:
            raise BadRequest(f"no rollout of {self.model} is under way (python -m tritonstack.rollout status "
                             f"{self.model})")
        if split is None:  # crashed after clearing the split: finish the cleanup
            winner = self.served()[-1]
        elif split.candidate is None:
            winner = split.primary
        else:
            winner = split.candidate if promote else split.primary
            loser = split.primary if promote else split.candidate
            log_event(self.folder, "promote" if promote else "rollback", winner=winner, loser=loser,
                      reason=reason)
            split = write_split(self.folder, Split(self.model, winner, None, mode=split.mode))
            time.sleep(SETTLE_S)
        self._serve_alone(winner)
        clear_split(self.folder)
        log_event(self.folder, "finished", serves=winner)
        return winner

    def _serve_alone(self, winner: int) -> None:
        """Serve ``winner`` only, the ensembles on the model again, the router gone."""
        router_there = (Path(self.target.repository) / self.router).is_dir()
        repo.set_versions(self.target.repository, self.model, [winner])
        self._load_quietly(self.model)
        rewired = repo.ensembles_over(self.target.repository, self.router)
        for ensemble in rewired:
            repo.rewire(self.target.repository, ensemble, self.router, self.model)
            self.client.load_model(ensemble)
        if router_there:
            if rewired:
                # Requests the old ensembles handed the router are answered from its thread pool
                # after execute returned. Triton keeps a model while a response is owed, so this
                # is a margin for the answers in flight, not what keeps them alive.
                time.sleep(SETTLE_S)
            self._unload_quietly(self.router)
            repo.remove_router(self.target.repository, self.model)

    def _unload_quietly(self, model: str) -> None:
        with contextlib.suppress(ClientError):  # not loaded: nothing to unload
            self.client.unload_model(model)

    # -- canary ------------------------------------------------------------------------------
    def canary(self, candidate: int, steps: tuple[float, ...], hold_s: float, slo: Slo,
               compare: float = 20.0, poll_s: float = 1.0, margins: Margins = DEFAULT_MARGINS,
               max_hold_s: float | None = None) -> Outcome:
        split = self.start(candidate, "canary")
        first = 0
        if split.mode == "canary" and split.weight in steps:
            first = steps.index(split.weight)
            if first:
                self.progress(f"resuming the canary of v{candidate} at {split.weight:g} %")
                log_event(self.folder, "resume", weight=split.weight)
        kind = self.kind(split)
        start_snap, start_time = self.snapshot(), time.monotonic()
        for weight in steps[first:]:
            split = self.set_split(weight=weight, compare=compare, mode="canary")
            log_event(self.folder, "step", weight=weight, hold_s=hold_s)
            breaches = self._hold(split, kind, slo, hold_s, poll_s, max_hold_s or 5 * hold_s)
            if breaches:
                worst = breaches[0]
                log_event(self.folder, "breach", slo=worst.slo, arm=worst.arm, version=worst.version,
                          measured=worst.measured, bound=worst.bound, evidence=worst.evidence,
                          weight=weight)
                report = self._report(split, kind, start_snap, start_time, margins,
                                      f"rolled back at {weight:g} %: {worst}")
                self.finish(promote=False, reason=str(worst))
                return Outcome(False, breaches, report)
            log_event(self.folder, "held", weight=weight)
        report = self._report(split, kind, start_snap, start_time, margins,
                              f"promoted v{candidate}: every SLO held at every step")
        self.finish(promote=True, reason="every step held")
        return Outcome(True, [], report)

    def _hold(self, split: Split, kind: str, slo: Slo, hold_s: float, poll_s: float,
              max_hold_s: float) -> list[Breach]:
        """Watch one step for ``hold_s``, and past it while the candidate has too little traffic
        to judge (up to ``max_hold_s``): a quiet step is extended, not failed."""
        base, start = self.snapshot(), time.monotonic()
        warmup_s = min(LATENCY_WARMUP_S, hold_s / 3)
        latency_base: Snapshot | None = None
        while True:
            elapsed = time.monotonic() - start
            until = hold_s if elapsed < hold_s else max_hold_s
            time.sleep(max(0.05, min(poll_s, until - elapsed)))
            elapsed = time.monotonic() - start
            now = self.snapshot()
            window = now - base
            # a version that just got its share pays for cold caches and first batch shapes in
            # its first moments: latency is judged from warmup_s into the step (errors and
            # agreement from its start)
            window.buckets = (now - latency_base).buckets if latency_base is not None else {}
            if latency_base is None and elapsed >= warmup_s:
                latency_base = now
            breaches = judge(window, split, slo, kind, elapsed, final=elapsed >= hold_s)
            self.progress(self._line(split, window, elapsed, hold_s))
            if not breaches:
                if elapsed >= hold_s:
                    return []
                continue
            if breaches[0].slo == "evidence" and elapsed < max_hold_s:
                continue  # waiting for enough requests or compared rows
            return breaches

    def _line(self, split: Split, window: Snapshot, elapsed: float, hold_s: float) -> str:
        parts = [f"{split.weight:5.1f} % {elapsed:4.0f}/{hold_s:.0f} s"]
        for arm, version in (("primary", split.primary), ("candidate", split.candidate)):
            if version is None:
                continue
            p99 = window.quantile(version, 0.99)
            parts.append(f"{arm} v{version}: {window.answered(version)} ok {window.failed(version)} failed "
                         f"p99 {'–' if p99 is None else f'{p99 * 1000:.1f} ms'}")
        if split.candidate is not None and (mean := window.mean_agreement(split.candidate)) is not None:
            parts.append(f"agreement {mean:.4f} ({int(window.compared[split.candidate])} rows)")
        return " | ".join(parts)

    def _report(self, split: Split, kind: str, base: Snapshot, start: float, margins: Margins,
                verdict: str) -> Path:
        window = self.snapshot() - base
        log = read_log(self.folder)
        starts = [i for i, e in enumerate(log) if e.get("event") == "start"]
        events = log[starts[-1]:] if starts else log[-20:]
        return write(self.target.reports, summarize(window, split, kind, time.monotonic() - start, margins),
                     events, verdict)

    # -- shadow and report -------------------------------------------------------------------
    def shadow(self, candidate: int, share: float, duration_s: float, margins: Margins = DEFAULT_MARGINS,
               keep: bool = False) -> Path:
        self.start(candidate, "shadow")
        split = self.set_split(weight=0, compare=share, mode="shadow")
        path = self.measure(duration_s, margins, split)
        if not keep:
            self.finish(promote=False, reason="shadow run over")
        return path

    def measure(self, duration_s: float, margins: Margins = DEFAULT_MARGINS,
                split: Split | None = None) -> Path:
        """Watch the live split for ``duration_s`` and write the A/B report of that window."""
        split = split or self.split()
        if split is None or split.candidate is None:
            raise BadRequest(f"no rollout of {self.model} is under way: nothing to compare")
        kind = self.kind(split)
        base, start = self.snapshot(), time.monotonic()
        while (elapsed := time.monotonic() - start) < duration_s:
            time.sleep(min(1.0, duration_s - elapsed))
            self.progress(self._line(split, self.snapshot() - base, time.monotonic() - start, duration_s))
        log_event(self.folder, "measured", seconds=round(duration_s, 1), weight=split.weight,
                  compare=split.compare)
        return self._report(split, kind, base, start, margins,
                            f"{split.mode}: v{split.candidate} against v{split.primary} "
                            f"for {duration_s:.0f} s")

    def status(self) -> dict:
        split = self.split()
        return {"model": self.model, "served": self.served(),
                "split": None if split is None else dataclasses.asdict(split),
                "log": read_log(self.folder)[-10:]}
