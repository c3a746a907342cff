"""The Modal deployment (docker/modal/app.py) built with the real ``modal`` package, offline, and
the Modal plan of ``python -m tritonstack.loadtest cost --platform modal`` against hand-computed figures."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

APP_FILE = ROOT / "docker" / "modal" / "app.py"
FIXTURES = ROOT / "tests" / "loadtest" / "fixtures"


def _load(monkeypatch, **env: str):
    """docker/modal/app.py imported as Modal imports it, with no network reachable."""
    def no_network(*_a, **_k):
        raise OSError("the test forbids network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("modal_triton_app", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "modal_triton_app", module)
    spec.loader.exec_module(module)
    return module


def test_the_app_builds_with_the_settings_it_states(monkeypatch) -> None:
    import modal

    m = _load(monkeypatch)
    s = m.SETTINGS
    dockerfile = (ROOT / "docker" / "Dockerfile.gpu").read_text()
    assert f"ARG TRITON_IMAGE={s.image}\n" in dockerfile  # one NGC tag for both GPU targets
    assert isinstance(m.app, modal.App) and isinstance(m.serve, modal.Function)
    assert (m.serve._spec_.gpus, list(m.serve._spec_.volumes)) == ("L4", ["/models"])
    assert [repr(x) for x in m.serve._spec_.secrets] == ["modal.Secret.from_name('triton-access-token')"]
    o = m.OPTIONS
    assert (o["gpu"], o["min_containers"], o["max_containers"]) == ("L4", 1, 4)
    assert (o["scaledown_window"], o["timeout"], o["startup_timeout"]) == (300, 3600, 600)
    assert s.max_inputs == 32
    # the launcher, as the GPU image's entrypoint runs it, with its truthful readiness port
    args = s.launcher_args()
    assert args[:4] == ["python3", "-m", "tritonstack.server", "serve"]
    assert args[args.index("--model-repository") + 1] == "/models"
    assert args[args.index("--health-port") + 1] == str(s.health_port) == "8003"
    assert "--open-control-plane" not in args  # the Secret's token restricts model load/unload
    assert m.grpc_tunnel._spec_.gpus == "L4"


def test_settings_come_from_the_environment_and_are_validated(monkeypatch) -> None:
    m = _load(monkeypatch, MODAL_TRITON_GPU="H100", MODAL_TRITON_MIN_CONTAINERS="0")
    assert (m.OPTIONS["gpu"], m.OPTIONS["min_containers"]) == ("H100", 0)
    with pytest.raises(ValueError, match="not one Modal offers"):
        m.ModalSettings(gpu="X100")
    with pytest.raises(ValueError, match="0 <= min"):
        m.ModalSettings(min_containers=5, max_containers=2)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_dry_run_needs_no_account_and_says_what_would_be_deployed() -> None:
    done = _run(str(APP_FILE), "deploy", "--dry-run", "--gpu", "A10G")
    assert done.returncode == 0, done.stderr
    for line in ("gpu         A10G", "volume      triton-model-repository",
                 "secret      triton-access-token", "min 1 warm, max 4 containers, 32 concurrent",
                 "nvcr.io/nvidia/tritonserver:24.10-py3"):
        assert line in done.stdout
    bad = _run(str(APP_FILE), "deploy", "--dry-run", "--gpu", "X100")
    assert bad.returncode == 2 and bad.stderr.startswith("InvalidSettings: GPU 'X100'")


def test_the_modal_plan_matches_a_hand_computed_one() -> None:
    done = _run("-m", "tritonstack.loadtest", "cost", str(FIXTURES / "summary-cpu.json"), "--platform", "modal",
                "--gpu", "L4", "--target-rps", "500", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    per_second = 0.000222 + 4 * 0.0000131 + 16 * 0.00000222  # GPU + 4 cores + 16 GiB
    assert plan["containers"] == 5  # ceil(500 / (200 rps * 0.6))
    assert plan["usd_per_container_hour"] == pytest.approx(per_second * 3600)
    assert plan["usd_per_hour"] == pytest.approx(5 * per_second * 3600)
    assert plan["usd_per_million"] == pytest.approx(5 * per_second * 3600 / (500 * 3600) * 1e6)
    assert plan["idle_usd_per_hour"] == pytest.approx(per_second * 3600)
    assert "assumes one L4 container sustains 200 rps" in plan["estimate"]  # measured on a CPU


def test_a_report_measured_on_the_gpu_is_no_estimate() -> None:
    done = _run("-m", "tritonstack.loadtest", "cost", f"L4={FIXTURES / 'summary-l4.json'}", "--platform", "modal",
                "--gpu", "L4", "--target-rps", "3000", "--min-containers", "2")
    assert done.returncode == 0, done.stderr
    assert not done.stdout.startswith("ESTIMATE") and "ESTIMATE" not in done.stdout
    assert "3 container(s)" in done.stdout  # ceil(3000 / (2000 * 0.6)) = 3, above the warm pool of 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--gpu", "L5", "--target-rps", "10"], "unknown Modal GPU 'L5'; did you mean L4?"),
    (["--gpu", "L4", "--target-rps", "-5"], "--target-rps must be a positive number"),
    (["--gpu", "L4"], "needs --target-rps"),
])
def test_bad_modal_plans_are_one_line_and_exit_2(argv, message) -> None:
    done = _run("-m", "tritonstack.loadtest", "cost", str(FIXTURES / "summary-cpu.json"), "--platform", "modal",
                *argv)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_report_without_throughput_is_refused(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"campaign": "x"}))
    done = _run("-m", "tritonstack.loadtest", "cost", str(tmp_path / "summary.json"), "--platform", "modal",
                "--gpu", "L4", "--target-rps", "10")
    assert done.returncode == 2 and "has no throughput" in done.stderr


def test_the_app_imports_inside_a_container(monkeypatch, tmp_path: Path) -> None:
    """Modal imports app.py again in each container, mounted at /root/app.py with no docker/
    folder beside it (modal/_utils/function_utils.py): the import must not read the repository's
    files there. Simulated: a copy with nothing around it, and modal.is_local() false."""
    import modal

    copy = tmp_path / "root" / "app.py"
    copy.parent.mkdir()
    copy.write_text(APP_FILE.read_text())
    monkeypatch.setattr(modal, "is_local", lambda: False)
    spec = importlib.util.spec_from_file_location("modal_triton_app_remote", copy)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "modal_triton_app_remote", module)
    spec.loader.exec_module(module)
    assert module.SETTINGS is not None and isinstance(module.serve, modal.Function)
    assert module.SETTINGS.launcher_args()[:4] == ["python3", "-m", "tritonstack.server", "serve"]
