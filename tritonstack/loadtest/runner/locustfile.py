"""The locustfile ``python -m tritonstack.loadtest run`` hands to Locust (``locust -f loadtest/runner/locustfile.py``).

It reads the resolved campaign from ``$LOADTEST_PLAN`` (a JSON file written by the runner),
builds the payload pools, and defines one user class and one shape for it. On the process that
runs the shape (single process or master) the ``quitting`` listener writes ``windows.json`` and
sets the exit code from the SLOs; every process writes its own generator CPU cost.
"""

from __future__ import annotations

# gRPC must be made gevent-cooperative before any channel exists.
import grpc.experimental.gevent as _grpc_gevent

_grpc_gevent.init_gevent()

import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import locust.runners  # noqa: E402
from locust import events  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

from tritonstack.loadtest.campaign.spec import Campaign  # noqa: E402
from tritonstack.loadtest.runner import payloads, results, shapes, users  # noqa: E402

# Workers report every second (not 3): stage windows on the master then lag by at most 1 s.
locust.runners.WORKER_REPORT_INTERVAL = 1.0

_PLAN = json.loads(Path(os.environ["LOADTEST_PLAN"]).read_text())
_CAMPAIGN = Campaign.from_dict(_PLAN["campaign"])
_REPORT_DIR = Path(_PLAN["report_dir"])
_PREPARE_START = time.process_time()


class TritonUser(users.TritonGrpcUser):
    """The campaign's traffic mix against the campaign's target."""

    abstract = False
    target = _PLAN["grpc"]
    timeout_s = _CAMPAIGN.target.timeout_s
    names = [t.stats_name for t in _CAMPAIGN.traffic]
    pools = [payloads.build_pool(t, seed=i) for i, t in enumerate(_CAMPAIGN.traffic)]
    schedule = payloads.mix_schedule([t.weight for t in _CAMPAIGN.traffic])
    # each process starts somewhere else in the pools (several processes share the same pools)
    cursors = [random.randrange(len(pool)) for pool in pools]


_Shape = shapes.FindMaxShape if _CAMPAIGN.find_max else shapes.CampaignShape
CampaignLoadShape = type("CampaignLoadShape", (_Shape,), {"campaign": _CAMPAIGN, "abstract": False})
PREPARE_CPU_S = time.process_time() - _PREPARE_START
_first = _CAMPAIGN.stages[0] if _CAMPAIGN.stages else None
users.Pacing.per_user = (_first.rps / _first.users if _first and _first.rps else
                         (_CAMPAIGN.find_max.start_rps / _CAMPAIGN.find_max.users if _CAMPAIGN.find_max
                          else None))
_cpu: dict[str, float] = {}


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:  # noqa: ANN001
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        def _set_rate(environment, msg, **_kw) -> None:  # noqa: ANN001
            users.Pacing.per_user = msg.data["per_user"]

        runner.register_message(shapes.RATE_MESSAGE, _set_rate)
    elif environment.shape_class is not None:
        environment.shape_class.recorder = shapes.Recorder(runner, _PLAN.get("server_pid"),
                                                           _PLAN.get("metrics_url"))


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:  # noqa: ANN001
    _cpu.update(cpu=time.process_time(), wall=time.monotonic(), requests=users.Counter.requests)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:  # noqa: ANN001
    if not _cpu:
        return
    role = type(environment.runner).__name__.replace("Runner", "").lower()
    record = {"pid": os.getpid(), "role": role, "cpu_s": time.process_time() - _cpu["cpu"],
              "wall_s": time.monotonic() - _cpu["wall"],
              "requests": users.Counter.requests - _cpu["requests"], "prepare_cpu_s": PREPARE_CPU_S}
    (_REPORT_DIR / f"generator-{os.getpid()}.json").write_text(json.dumps(record))
    _cpu.clear()


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:  # noqa: ANN001
    for channel in list(users.TritonGrpcUser.channels):
        channel.close()
    shape = environment.shape_class
    if isinstance(environment.runner, WorkerRunner) or shape is None or not hasattr(shape, "recorder"):
        return
    result = getattr(shape, "result", None)
    windows = shape.recorder.windows
    (_REPORT_DIR / "windows.json").write_text(json.dumps({"windows": windows, "find_max": result}))
    verdicts = results.verdicts(_CAMPAIGN, windows, result)
    if any(not v.passed for v in verdicts):
        environment.process_exit_code = 1
