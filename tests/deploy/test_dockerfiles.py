"""The Dockerfiles pass hadolint and the project's policy; broken ones are caught."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import FIXTURES, ROOT, validate

DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))

pytestmark = pytest.mark.usefixtures("hadolint_available")


def test_both_images_exist() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint_and_policy(dockerfile: Path) -> None:
    assert validate.check_dockerfile(dockerfile) == []


def test_broken_dockerfile_is_caught() -> None:
    problems = "\n".join(validate.check_dockerfile(FIXTURES / "Dockerfile.broken"))
    for code in ("DL3007", "DL3008", "DL3064", "DL3025"):  # latest, apt pins, secret in ENV, shell CMD
        assert code in problems
    assert "runs as root" in problems
    assert "HEALTHCHECK" in problems


def test_policy_catches_root_and_missing_healthcheck() -> None:
    path = FIXTURES / "Dockerfile.root-no-healthcheck"
    assert validate.hadolint(path) == []  # hadolint alone would let it through
    problems = validate.dockerfile_policy(path)
    assert any("runs as root" in p for p in problems)
    assert any("/v2/health/ready" in p for p in problems)


def test_policy_follows_stage_inheritance(tmp_path: Path) -> None:
    good = tmp_path / "Dockerfile.ok"
    good.write_text('ARG BASE=python:3.11.14-slim-bookworm\nFROM ${BASE} AS runtime\nUSER 1000:1000\n'
                    'HEALTHCHECK CMD ["curl", "-f", "http://127.0.0.1:8000/v2/health/ready"]\n'
                    'FROM runtime AS mounted\nVOLUME ["/models"]\n')
    assert validate.dockerfile_policy(good) == []
    named = tmp_path / "Dockerfile.named"
    named.write_text(good.read_text().replace("USER 1000:1000", "USER triton"))
    assert any("numeric non-root" in p for p in validate.dockerfile_policy(named))
    untagged = tmp_path / "Dockerfile.untagged"
    untagged.write_text(good.read_text().replace("python:3.11.14-slim-bookworm", "python"))
    assert any("not pinned" in p for p in validate.dockerfile_policy(untagged))


def test_cli_exit_codes() -> None:
    ok = subprocess.run([validate.sys.executable, str(ROOT / "docker" / "validate.py")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([validate.sys.executable, str(ROOT / "docker" / "validate.py"),
                          str(FIXTURES / "Dockerfile.broken")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "Invalid:" in bad.stderr and "Traceback" not in bad.stderr


def test_cpu_image_installs_with_the_shared_script() -> None:
    """The CPU image runs docker/install.sh, the script `make venv` calls (same steps), with the
    serve extra for Triton and the loadtest extra for Locust: no torch in either."""
    text = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    assert 'docker/install.sh /opt/venv/bin/python ".[serve]"' in text
    assert 'docker/install.sh /opt/venv/bin/python ".[loadtest]"' in text
    assert 'docker/install.sh /opt/venv/bin/python ".[http]"' in text
    script = (ROOT / "docker" / "install.sh").read_text()
    steps = [line.split('"$py" -m pip install -q ', 1)[1] for line in script.splitlines()
             if '"$py" -m pip install -q ' in line]
    assert steps[0] == "--upgrade pip"
    assert any("torch==${TORCH_VERSION}" in s for s in steps[1:3])
    assert steps[-1] == '--no-deps "nvidia-pytriton==${PYTRITON_VERSION}"'
    assert "TORCH_VERSION=2.13.0" in script and "PYTRITON_VERSION=0.7.0" in script
    assert 'case "$*" in *dev*|*export*) with_torch=1' in script  # torch only where it is needed
    assert 'case "$*" in *dev*|*serve*) with_triton=1' in script


def _stage(path: Path, name: str) -> list[tuple[str, str]]:
    """The instructions of one stage of a Dockerfile, and of the build stage it copies from."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for _, keyword, rest in validate._instructions(path.read_text()):
        if keyword == "FROM":
            current = stages.setdefault(rest.split()[-1].lower(), [])
        current.append((keyword, rest))
    return stages[name]


def test_the_http_front_image_is_the_http_extra_alone() -> None:
    """The front's target: only the http extra (no Triton, no torch), non-root, the front as its
    entrypoint binding 0.0.0.0 on purpose, and a HEALTHCHECK on its /health."""
    dockerfile = ROOT / "docker" / "Dockerfile.cpu"
    build = dict(_stage(dockerfile, "build-http"))
    assert build["FROM"] == "source AS build-http"
    assert build["RUN"].endswith('docker/install.sh /opt/venv/bin/python ".[http]"')
    stage = _stage(dockerfile, "http")
    instructions = dict(stage)
    assert instructions["FROM"] == "${PYTHON_IMAGE} AS http"  # the slim base, not the serving image
    assert ("COPY", "--from=build-http /opt/venv /opt/venv") in stage
    assert instructions["USER"] == "1000:1000"
    assert instructions["ENTRYPOINT"] == '["python", "-m", "tritonstack.http"]'
    assert instructions["CMD"] == '["serve", "--host", "0.0.0.0", "--port", "8080"]'
    assert "http://127.0.0.1:8080/health" in instructions["HEALTHCHECK"]
    assert instructions["EXPOSE"] == "8080"
    # install.sh adds torch and the Triton wheel only for dev/export and dev/serve (tested above).
    assert "http) name=triton-stack-http" in (ROOT / "docker" / "podman" / "build.sh").read_text()


def test_install_script_usage_error() -> None:
    proc = subprocess.run(["bash", str(ROOT / "docker" / "install.sh")], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "usage:" in proc.stderr


# Python 3.11+ stdlib names the GPU image (NGC 24.10: Python 3.10) does not have.
_PY311_ONLY = {("tomllib", None), ("enum", "StrEnum"), ("typing", "Self"), ("datetime", "UTC"),
               ("typing", "LiteralString"), ("typing", "Never"), ("typing", "assert_never")}


def _py311_usages(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if (a.name, None) in _PY311_ONLY]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if (node.module, a.name) in _PY311_ONLY or (node.module, None) in _PY311_ONLY]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and (node.value.id, node.attr) in _PY311_ONLY):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_what_the_gpu_image_runs_has_no_3_11_only_code() -> None:
    """The GPU image runs the launcher and the versions' serving code on NGC's Python 3.10. A quick
    static look; tests/shipped/test_gpu_python.py runs them there for real."""
    files = sorted(p for d in ("serving", "server") for p in (ROOT / "tritonstack" / d).rglob("*.py"))
    assert files
    problems = {}
    for path in files:
        try:
            if usages := _py311_usages(path):
                problems[str(path.relative_to(ROOT))] = usages
        except SyntaxError as exc:
            problems[str(path.relative_to(ROOT))] = [f"not Python 3.10 syntax: {exc}"]
    assert problems == {}, "the GPU image runs these on Python 3.10"
