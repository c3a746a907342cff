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
    data["services"]["http"]["build"]["target"] = "front"
    path = tmp_path / "compose.yaml"
    # Resolve the build context against the repository, as the real file does.
    data["services"]["triton"]["build"]["context"] = str(ROOT)
    data["services"]["http"]["build"]["context"] = str(ROOT)
    path.write_text(yaml.safe_dump(data))
    problems = "\n".join(validate.check_compose(path))
    assert "Dockerfile.nope" in problems
    assert "locust-boss" in problems
    assert "no-such-campaign" in problems
    assert "builds target 'front', which Dockerfile.cpu does not define" in problems


def test_env_example_holds_no_secret() -> None:
    values = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert values["TRITON_ACCESS_TOKEN"] == "" and values["TRITONSTACK_HTTP_TOKEN"] == ""
    assert {"CAMPAIGN", "LOCUST_WORKERS", "IMAGE_TAG"} <= values.keys()
    assert (ROOT / "tritonstack" / "loadtest" / "campaigns" / f"{values['CAMPAIGN']}.toml").is_file()


def test_dockerignore_keeps_secrets_and_environments_out() -> None:
    lines = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", ".env", "tests"} <= lines
    assert "README.md" not in lines  # pip install . reads it (pyproject readme)


def test_compose_runs_the_http_front_as_its_own_service() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    front = services["http"]
    assert (front["build"]["dockerfile"], front["build"]["target"]) == ("docker/Dockerfile.cpu", "http")
    assert "http" in validate.dockerfile_stages(ROOT / "docker" / "Dockerfile.cpu")
    assert front["depends_on"]["triton"]["condition"] == "service_healthy"
    command = front["command"]
    assert command[0] == "serve"
    assert validate._flag(command, "--host") == "0.0.0.0"  # explicit: the front binds loopback otherwise
    assert validate._flag(command, "--url") == "triton:8001"
    # The same repository as Triton's, read-only: the front reads the pipelines' tokenizers.
    repository = validate._flag(command, "--model-repository")
    (triton_volume,) = services["triton"]["volumes"]
    assert f"{triton_volume.split(':')[0]}:{repository}:ro" in front["volumes"]
    assert front["environment"] == {"TRITONSTACK_HTTP_TOKEN": "${TRITONSTACK_HTTP_TOKEN:-}",
                                    "TRITON_ACCESS_TOKEN": "${TRITON_ACCESS_TOKEN:-}"}
    assert front["read_only"] is True
    port = validate._flag(command, "--port")
    assert front["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_compose_publishes_ports_on_loopback_only() -> None:
    for path in validate.default_targets()["compose"]:
        for name, service in (yaml.safe_load(path.read_text()).get("services") or {}).items():
            for port in service.get("ports") or []:
                assert str(port).startswith("127.0.0.1:"), f"{path.name}: {name} publishes {port}"
