"""The alert rules and the dashboard in docker/monitoring, checked offline: promtool's syntax check
and its rule unit tests (alerts_test.yml: each alert fires on the series it should, with the
stated labels and text, and not below its threshold or before its `for`), and the dashboard's
structure. The same rules and every dashboard query also run against a real Prometheus
scraping a real Triton in test_prometheus.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

MONITORING = Path(__file__).resolve().parents[2] / "docker" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "triton-stack.json"
# Every series the rules and the dashboard may read: Triton 2.51's (seen on a real /metrics) and
# the stack's own (drift and data quality from the model backends, readiness from the launcher).
KNOWN_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_pending_request_count",
    "nv_inference_request_summary_us", "triton_stack_drift_psi", "triton_stack_data_quality_total",
    "triton_stack_ready", "triton_stack_rollout_requests_total", "triton_stack_rollout_agreement_sum",
    "triton_stack_rollout_compared_total", "triton_stack_shed_total",
}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


@pytest.mark.prometheus
def test_rules_and_config_pass_promtool_check() -> None:
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml"),
                 ("check", "config", "prometheus-compose.yml")):
        proc = _promtool(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 rules found" in _promtool("check", "rules", "alerts.yml").stdout


@pytest.mark.prometheus
def test_rule_unit_tests_pass() -> None:
    proc = _promtool("test", "rules", "alerts_test.yml")
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.prometheus
def test_a_wrong_expectation_fails_the_rule_tests(tmp_path) -> None:
    """The unit tests can fail: the drift alert with a threshold it does not have."""
    tests = (MONITORING / "alerts_test.yml").read_text().replace("'0.2x20'", "'0.3x20'")
    (tmp_path / "alerts.yml").write_text((MONITORING / "alerts.yml").read_text())
    (tmp_path / "alerts_test.yml").write_text(tests)
    proc = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "TritonModelDrift" in proc.stdout + proc.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]


def test_the_dashboard_covers_what_operators_watch_and_reads_known_series() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("throughput", "latency", "batch", "queue", "refused", "errors", "drift", "data quality",
                  "rollout"):
        assert topic in titles, topic
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for title, expr in dashboard_queries():
        names = set(re.findall(r"\b((?:nv|triton_stack)_[a-z_]+)\b", expr))
        assert names and names <= KNOWN_METRICS, (title, names - KNOWN_METRICS)
    rules = (MONITORING / "alerts.yml").read_text()
    assert set(re.findall(r"\b((?:nv|triton_stack)_[a-z_]+)\b", rules)) <= KNOWN_METRICS


def test_the_compose_overlay_mounts_what_exists_and_provisions_the_dashboard() -> None:
    import yaml

    compose = MONITORING.parent / "compose.monitoring.yaml"
    services = yaml.safe_load(compose.read_text())["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (compose.parent / source).exists(), volume
    command = " ".join(services["prometheus"]["command"])
    assert "/etc/prometheus/prometheus-compose.yml" in command
    providers = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" /
                                "triton-stack.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARD.parent.name == "grafana"  # mounted at that path
