"""Load campaigns against Triton with Locust: campaigns as files, SLO gates, reports, find-max.

``python -m tritonstack.loadtest run smoke --model-repository model_repository`` runs a bundled campaign;
see docs/loadtest.md. Nothing in the project imports ``loadtest``; it talks to Triton over gRPC
and reads its metrics endpoint.
"""

from tritonstack.loadtest.campaign import Campaign, FindMax, InputSpec, Stage, Target, Traffic, load, parse
from tritonstack.loadtest.errors import CampaignError, LoadTestError, RunFailed, TargetError
from tritonstack.loadtest.runner import RunOptions, RunResult, run
from tritonstack.loadtest.slo import Slo, Verdict

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
    "Target",
    "TargetError",
    "Traffic",
    "Verdict",
    "load",
    "parse",
    "run",
]
