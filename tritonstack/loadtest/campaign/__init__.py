"""What a load test runs: campaign files (:mod:`.spec`), their SLOs (:mod:`.slo`) and rates sized by
the server's capacity (:mod:`.sizing`). The bundled campaigns are in ``loadtest/campaigns/``."""

from tritonstack.loadtest.campaign.slo import Slo, Verdict
from tritonstack.loadtest.campaign.spec import (
    CAMPAIGNS_DIR,
    PIPELINES,
    SHIFTS,
    Campaign,
    CapacityProbe,
    Concurrency,
    FindMax,
    InputSpec,
    Stage,
    Target,
    Traffic,
    check_metrics_url,
    load,
    parse,
    resolve_path,
)

__all__ = ["CAMPAIGNS_DIR", "PIPELINES", "SHIFTS", "Campaign", "CapacityProbe", "Concurrency", "FindMax", "InputSpec",
           "Slo", "Stage", "Target", "Traffic", "Verdict", "check_metrics_url", "load", "parse", "resolve_path"]
