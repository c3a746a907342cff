"""Keep a running Triton truthful and healthy: dead backend stubs, their models, Triton itself.

Once per ``interval_s`` the launcher calls :meth:`Supervisor.check`, which

1. restarts a tritonserver that exited (``restart_on_failure`` times, backoff doubling from
   1 s up to 30 s), after killing the stubs a SIGKILLed Triton leaves behind;
2. finds backend stubs that died under Triton (:mod:`server.stubs`: a zombie child seen on two
   checks in a row), marks their models broken, and is not ready while any model is;
   A stub stopped (SIGSTOP, a debugger) for ``hung_after_s`` is killed so that it is healed the
   same way: Triton would wait on it forever and abort when it resumed;
3. heals a broken model with :meth:`TritonServer.reload_model` (new instances, traffic switched
   when they are ready; needs ``--model-control explicit``), logging one line and counting each
   recovery; or, where it cannot (other control modes, or ``heal_attempts`` failed loads),
   restarts Triton when restarts are left, and otherwise says why the launcher must exit.

A reload runs on a worker thread with a deadline (``heal_timeout_s``), never on the thread that
watches Triton: a Triton that dies during a heal is restarted at the next check (its stubs hold
the reload's connection open, so the call itself would only end at its timeout), and a signal
stops the launcher at once.

``ready`` is what the launcher's ``/v2/health/ready`` reports. A check costs one process-table
walk and one HTTP readiness call, whatever the request rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from tritonstack.server.config import ModelControl
from tritonstack.server.process import TritonServer, kill_process_group
from tritonstack.server.stubs import backend_stubs

Log = Callable[[str], None]


# Seconds in-flight requests may drain when a Triton wedged on a load is restarted.
WEDGED_DRAIN_S = 5.0


@dataclasses.dataclass(frozen=True)
class SupervisorConfig:
    """How hard the launcher works to keep Triton serving.

    Args:
        interval_s: Seconds between checks.
        heal: Reload a model whose backend stub died (explicit model control only).
        heal_attempts: Failed reloads of one model before recovery counts as impossible.
        restart_on_failure: Times a tritonserver that exited (or cannot heal a model) is
            started again before the launcher gives up; 0 = never.
        heal_timeout_s: Seconds one reload may take before it counts as a failed attempt.
        hung_after_s: Seconds a stub may stay stopped before it is killed and healed.
        wedged_after_s: Seconds a reload may go on after one of its model's new stubs died.
            Triton answers such a load with an error at once, or, when the stub died during
            its start-up, never: then Triton is restarted (measured with tritonserver 2.51).
    """

    interval_s: float = 1.0
    heal: bool = True
    heal_attempts: int = 3
    restart_on_failure: int = 0
    heal_timeout_s: float = 120.0
    hung_after_s: float = 5.0
    wedged_after_s: float = 10.0

    def __post_init__(self) -> None:
        from tritonstack.server.errors import ConfigError

        if not 0.1 <= self.interval_s <= 60:
            raise ConfigError(f"--health-interval must be 0.1..60 seconds, got {self.interval_s}")
        if not 1 <= self.heal_attempts <= 100:
            raise ConfigError(f"heal attempts must be 1..100, got {self.heal_attempts}")
        if not 0 <= self.restart_on_failure <= 1000:
            raise ConfigError(f"--restart-on-failure must be 0..1000, got {self.restart_on_failure}")
        if not 1 <= self.heal_timeout_s <= 3600:
            raise ConfigError(f"--heal-timeout must be 1..3600 seconds, got {self.heal_timeout_s}")
        if not 0.5 <= self.hung_after_s <= 3600:
            raise ConfigError(f"hung_after_s must be 0.5..3600 seconds, got {self.hung_after_s}")


class Supervisor:
    """Watches one :class:`TritonServer`; see the module docstring."""

    def __init__(self, server: TritonServer, config: SupervisorConfig | None = None,
                 metrics: object | None = None, log: Log = print,
                 stopping: threading.Event | None = None) -> None:
        self.server = server
        self.stopping = stopping or threading.Event()  # set by the launcher's signal handler
        self.config = config or SupervisorConfig()
        self.metrics = metrics  # server.health.HealthMetrics, or None
        self.log = log
        self.restarts = 0
        self.healed = 0  # reloads since the last (re)start: their old instances never unload
        self.broken: dict[str, float] = {}  # model -> when its stub was found dead
        self._attempts: dict[str, int] = {}
        self._known: dict[int, str] = {}  # stub pid -> model, learnt while it was alive
        self._suspect: set[int] = set()  # zombies seen once
        self._handled: set[int] = set()  # zombies already blamed on their model (Triton reaps them late)
        self._triton_ready = False
        self._stopped_since: dict[int, float] = {}  # stub pid -> first seen stopped
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="heal")
        self._heals: dict[str, tuple[Future[str | None], float]] = {}  # model -> reload, started
        self._wedged: dict[str, float] = {}  # model -> when a stub died under its reload

    @property
    def ready(self) -> bool:
        """Triton is ready and every model it serves can answer."""
        return self._triton_ready and not self.broken

    @property
    def can_heal(self) -> bool:
        return self.config.heal and self.server.config.model_control is ModelControl.EXPLICIT

    def stop(self) -> int | None:
        """Stop Triton (draining), not waiting for the instances heals left behind nor for a
        reload in flight (it fails with Triton)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        return self.server.stop(abandoned=self.healed)

    def check(self) -> str | None:
        """One round; returns why the launcher must exit, or None to keep serving."""
        code = self.server.poll()
        if code is not None:
            return self._restart(f"tritonserver exited with code {code}")
        for model in self._dead_stub_models():
            if model in self._heals:  # one of the reload's own new stubs
                self._wedged.setdefault(model, time.monotonic())
                self.log(f"a new backend of model '{model}' died during its reload")
                continue
            if model not in self.broken:
                self.broken[model] = time.monotonic()
                self._count("backend_failures", model)
                self.log(f"backend of model '{model}' died (its stub is a zombie); not ready until it is "
                         "reloaded")
        self._triton_ready = self.server.is_ready()
        self._set_ready()
        for model in list(self.broken):
            reason = self._heal(model)
            if reason:
                return reason
        self._set_ready()
        return None

    # -- finding dead stubs -----------------------------------------------------------------
    def _dead_stub_models(self) -> list[str]:
        pid = self.server.pid
        if pid is None:
            return []
        dead_now: set[int] = set()
        stopped: set[int] = set()
        for stub in backend_stubs(pid):
            if not stub.dead and stub.model is not None:
                self._known[stub.pid] = stub.model
            elif stub.dead:
                dead_now.add(stub.pid)
            if stub.stopped:
                stopped.add(stub.pid)
                self._kill_if_hung(stub.pid)
        self._stopped_since = {p: s for p, s in self._stopped_since.items() if p in stopped}
        self._handled &= dead_now  # the ones Triton has reaped by now are gone for good
        dead_now -= self._handled
        # A stub that exits normally is reaped at once; one still a zombie a check later died.
        confirmed = dead_now & self._suspect
        self._suspect = dead_now - confirmed
        self._handled |= confirmed
        models = []
        unknown = 0
        for pid_ in sorted(confirmed):
            model = self._known.pop(pid_, None)
            if model is None:
                unknown += 1  # died before a check saw it alive: its command line is gone
            elif model not in models:
                models.append(model)
        if unknown:
            short = self._models_short_of_instances(pid)
            models += [m for m in short if m not in models] or ["?"]
        return models

    def _kill_if_hung(self, pid: int) -> None:
        """A stub stopped for ``hung_after_s`` answers nothing while Triton and its readiness say
        all is well, and Triton aborts when it resumes: kill it, so that it is healed as dead."""
        since = self._stopped_since.setdefault(pid, time.monotonic())
        stopped_s = time.monotonic() - since
        if stopped_s < self.config.hung_after_s:
            return
        model = self._known.get(pid, "?")
        self.log(f"backend stub {pid} of model '{model}' has been stopped for {stopped_s:.0f} s; killing it "
                 "so that its model is reloaded")
        with contextlib.suppress(OSError):  # it died meanwhile
            os.kill(pid, signal.SIGKILL)
        self._stopped_since.pop(pid, None)

    def _models_short_of_instances(self, triton_pid: int) -> list[str]:
        """Python-backend models with fewer live stubs than their configuration asks for: where a
        stub that died unseen came from (a zombie keeps no command line to tell its model)."""
        try:
            expected = self.server.python_instances()
        except OSError as exc:
            self.log(f"cannot tell which model lost a stub: {_http_reason(exc)}")
            return []
        alive: dict[str, int] = {}
        for stub in backend_stubs(triton_pid):
            if not stub.dead and stub.model is not None:
                alive[stub.model] = alive.get(stub.model, 0) + 1
        return sorted(m for m, n in expected.items() if alive.get(m, 0) < n)

    # -- healing ------------------------------------------------------------------------------
    def _heal(self, model: str) -> str | None:
        """Start a reload of ``model`` on a worker, or take the result of the one in flight."""
        if not self.can_heal or model == "?":
            why = ("model control is not explicit" if self.config.heal and model != "?" else
                   "healing is off (--no-heal)" if model != "?" else "the dead stub's model is unknown")
            return self._restart(f"the backend of model '{model}' died and {why}")
        running = self._heals.get(model)
        if running is None:
            before = {pid for pid, owner in self._known.items() if owner == model}
            self._heals[model] = (self._pool.submit(self._reload, model, before), time.monotonic())
            return None
        future, started = running
        wedged = self._wedged.get(model)
        if not future.done() and wedged is not None and time.monotonic() - wedged >= self.config.wedged_after_s:
            # Triton's own shutdown waits for that load too: in-flight requests get a short drain.
            return self._restart(f"the reload of model '{model}' has not returned {self.config.wedged_after_s:.0f} s "
                                 "after one of its new backends died (Triton can wait for such a stub forever)",
                                 grace_s=WEDGED_DRAIN_S)
        if future.done():
            self._wedged.pop(model, None)
            detail = future.result()
        elif time.monotonic() - started >= self.config.heal_timeout_s:
            detail = f"no answer within {self.config.heal_timeout_s:.0f} s (--heal-timeout)"
        else:
            return None  # still loading; the next check looks again
        del self._heals[model]
        if detail is not None:
            self._attempts[model] = self._attempts.get(model, 0) + 1
            self.log(f"reloading model '{model}' failed (attempt {self._attempts[model]} of "
                     f"{self.config.heal_attempts}): {detail}")
            if self._attempts[model] >= self.config.heal_attempts:
                return self._restart(f"model '{model}' could not be recovered after "
                                     f"{self._attempts[model]} reloads: {detail}")
            return None
        seconds = time.monotonic() - self.broken[model]
        del self.broken[model]
        self.healed += 1
        self._attempts.pop(model, None)
        self._count("recoveries", model, seconds)
        self.log(f"model '{model}' recovered: reloaded with new instances {seconds:.1f} s after its dead "
                 "backend was found")
        return None

    def _reload(self, model: str, before: set[int]) -> str | None:
        """On a worker: reload ``model`` and check it has new instances; None, or why it failed."""
        try:
            self.server.reload_model(model, timeout_s=self.config.heal_timeout_s)
            state = self.server.model_states().get(model)
            if state != "READY":
                return f"state {state!r} after the reload"
            fresh = [s for s in backend_stubs(self.server.pid or 0)
                     if s.model == model and not s.dead and s.pid not in before]
            if not fresh:
                return "Triton kept the old instances (no new backend stub)"
        except OSError as exc:  # urllib's errors included
            return _http_reason(exc)
        except Exception as exc:  # noqa: BLE001 - a worker's failure is a failed attempt, not a crash
            return f"{type(exc).__name__}: {exc}"
        return None

    # -- restarting Triton ----------------------------------------------------------------------
    def _restart(self, reason: str, grace_s: float | None = None) -> str | None:
        if self.restarts >= self.config.restart_on_failure:
            self._triton_ready = False
            self._set_ready()
            return f"{reason}; giving up (--restart-on-failure {self.config.restart_on_failure})"
        self.restarts += 1
        backoff = min(30.0, 2.0 ** (self.restarts - 1))
        self.log(f"{reason}; restarting tritonserver in {backoff:.0f} s "
                 f"(restart {self.restarts} of {self.config.restart_on_failure})")
        self._triton_ready = False
        self._set_ready()
        self.server.stop(grace_s, abandoned=self.healed)
        self.healed = 0
        if self.server.pid is not None:
            kill_process_group(self.server.pid)  # also ends a reload in flight (the stubs held it)
        self._heals.clear()
        self._wedged.clear()
        if self.stopping.wait(backoff):
            return None  # a signal during the backoff: the launcher stops; nothing to restart
        self.broken.clear()
        self._attempts.clear()
        self._known.clear()
        self._suspect.clear()
        self._handled.clear()
        self._stopped_since.clear()
        self._count("restarts", None)
        try:
            self.server.start()
        except Exception as exc:  # StartupError and the like: the next check retries or gives up
            self.log(f"restart {self.restarts} failed: {type(exc).__name__}: {exc}")
            return self._restart("tritonserver failed to restart") if self.server.poll() is not None else None
        self.log("tritonserver restarted and ready")
        return None

    # -- metrics --------------------------------------------------------------------------------
    def _count(self, what: str, model: str | None, seconds: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.count(what, model, seconds)  # type: ignore[attr-defined]

    def _set_ready(self) -> None:
        if self.metrics is not None:
            self.metrics.set_ready(self.ready)  # type: ignore[attr-defined]


def _http_reason(exc: OSError) -> str:
    """Triton's own error text from an HTTP error body, else the exception."""
    import json
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        try:
            return str(json.loads(exc.read()).get("error", exc))
        except (ValueError, OSError):
            return str(exc)
    return str(exc)
