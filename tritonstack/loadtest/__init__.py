"""Load campaigns against Triton with Locust: campaigns as files, SLO gates, reports, find-max.

``python -m tritonstack.loadtest run smoke --model-repository model_repository`` runs a bundled campaign;
see docs/loadtest.md. Nothing in the project imports ``loadtest``; it talks to Triton over gRPC
and reads its metrics endpoint. One subpackage per job:

* ``campaign/``: what to run: campaign files, SLOs, rates sized by the server's capacity;
* ``runner/``: running it: Triton, preflight, Locust and its shapes, users, pacing, payloads, windows;
* ``report/``: the one typed summary (summary.json), report.md, report.html, the machine, compare;
* ``bench/``: perf_analyzer cross-check, served pipelines vs ONNX Runtime, client and storm benches;
* ``cost/``: dollars per million requests (cloud GPUs, Modal) and the price table;
* ``drills/``: the heal drill (a backend stub killed under load).
"""

from tritonstack.loadtest.campaign.slo import Slo, Verdict
from tritonstack.loadtest.campaign.spec import Campaign, FindMax, InputSpec, Stage, Target, Traffic, load, parse
from tritonstack.loadtest.errors import CampaignError, LoadTestError, RunFailed, TargetError
from tritonstack.loadtest.report.summary import Summary
from tritonstack.loadtest.runner.run import RunOptions, RunResult, run

__all__ = [
    "Campaign",
    "CampaignError",
    "FindMax",
    "InputSpec",
    "LoadTestError",
    "RunFailed",
    "RunOptions",
    "RunResult",
    "Slo",
    "Stage",
    "Summary",
    "Target",
    "TargetError",
    "Traffic",
    "Verdict",
    "load",
    "parse",
    "run",
]
