"""A shadow candidate computes only on CPU the served versions leave idle."""

from __future__ import annotations

import contextlib
import json
import os


def shadow_candidate(model_folder: str, version: int) -> bool:
    """Whether ``python -m tritonstack.rollout shadow`` loads this version only to receive copies of the
    traffic (``rollout.json`` beside the versions: mode "shadow", this version the candidate)."""
    try:
        with open(os.path.join(model_folder, "rollout.json")) as f:
            split = json.load(f)
    except (OSError, ValueError):
        return False
    return split.get("mode") == "shadow" and split.get("candidate") == version


def lowest_cpu_priority() -> None:
    """SCHED_IDLE for every thread of this process (Linux schedules threads, not processes): a
    shadow candidate computes on CPU the served versions leave idle, and any of their threads
    that wakes preempts it at once (nice 19 alone still let a primary wait out the candidate's
    time slice: +37 % p99 on embed). Where SCHED_IDLE is refused, nice 19. It is never undone;
    serving the version loads it anew."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.setpriority(os.PRIO_PROCESS, int(tid), 19)
