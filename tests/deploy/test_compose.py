"""docker/compose.yaml parses and points at files that exist."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.conftest import ROOT, validate

COMPOSE = ROOT / "docker" / "compose.yaml"


def test_compose_files_are_consistent() -> None:
    for path in validate.default_targets()["compose"]:
        assert validate.check_compose(path) == []


def test_compose_runs_triton_and_a_distributed_campaign() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"triton", "locust-master", "locust-worker"} <= services.keys()
    assert services["triton"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert services["triton"]["shm_size"]
    master = services["locust-master"]
    assert "--master" in master["command"] and master["command"][0] == "run"
    assert services["locust-worker"]["command"][0] == "worker"
    assert master["depends_on"]["triton"]["condition"] == "service_healthy"


def test_broken_compose_is_caught(tmp_path: Path) -> None:
    data = yaml.safe_load(COMPOSE.read_text())
    data["services"]["triton"]["build"]["dockerfile"] = "docker/Dockerfile.nope"
    data["services"]["locust-worker"]["depends_on"] = {"locust-boss": {"condition": "service_started"}}
    data["services"]["locust-master"]["command"][1] = "/opt/stack/campaigns/no-such-campaign.toml"
    path = tmp_path / "compose.yaml"
    # Resolve the build context against the repository, as the real file does.
    data["services"]["triton"]["build"]["context"] = str(ROOT)
    path.write_text(yaml.safe_dump(data))
    problems = "\n".join(validate.check_compose(path))
    assert "Dockerfile.nope" in problems
    assert "locust-boss" in problems
    assert "no-such-campaign" in problems


def test_env_example_holds_no_secret() -> None:
    values = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert values["TRITON_ACCESS_TOKEN"] == ""
    assert {"CAMPAIGN", "LOCUST_WORKERS", "IMAGE_TAG"} <= values.keys()
    assert (ROOT / "tritonstack" / "loadtest" / "campaigns" / f"{values['CAMPAIGN']}.toml").is_file()


def test_dockerignore_keeps_secrets_and_environments_out() -> None:
    lines = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", ".env", "tests"} <= lines
    assert "README.md" not in lines  # pip install . reads it (pyproject readme)
