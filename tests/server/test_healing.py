"""The launcher keeps Triton truthful and healthy: a dead backend stub is found, its model reloaded,
readiness is false meanwhile; Triton that dies is restarted; nothing outlives the launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

from tests.helpers import repos
from tritonstack.server import free_port
from tritonstack.server.stubs import backend_stubs, parse_cmdline

pytestmark = pytest.mark.triton
ROOT = Path(__file__).resolve().parents[2]


class Launcher:
    """``python -m tritonstack.server serve`` on free ports, as an operator runs it."""

    def __init__(self, repo: Path, *args: str) -> None:
        self.grpc, self.http, self.metrics, self.health = (free_port() for _ in range(4))
        cmd = [sys.executable, "-m", "tritonstack.server", "serve", "--model-repository", str(repo),
               f"--grpc-port={self.grpc}", f"--http-port={self.http}", f"--metrics-port={self.metrics}",
               f"--health-port={self.health}", "--health-interval=0.5", "--exit-timeout=10", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        _wait(lambda: self.health_status("ready") == 200 or self.proc.poll() is not None, 120)
        assert self.proc.poll() is None, self.output()

    def health_status(self, what: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/v2/health/{what}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/metrics", timeout=2) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    @property
    def triton(self) -> psutil.Process:
        return next(c for c in psutil.Process(self.proc.pid).children() if c.name() == "tritonserver")

    def output(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.communicate(timeout=60)[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def _wait(condition: Callable[[], bool], timeout_s: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        time.sleep(0.1)
    return time.monotonic() - start


def _add_two(url: str) -> float | str:
    inp = grpcclient.InferInput("INPUT", [1, 4], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with grpcclient.InferenceServerClient(url) as client:
        try:
            return float(client.infer("add_two", [inp]).as_numpy("OUTPUT")[0, 0])
        except Exception as exc:
            return str(exc)


def _stubs_anywhere() -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if parse_cmdline(proc.info["cmdline"] or []) is not None:
                found.append(proc.info["pid"])
        except psutil.Error:
            continue
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repos.write_add_one(tmp_path)
    repos.write_add_two_ensemble(tmp_path)
    return tmp_path


@pytest.fixture
def launch(repo: Path) -> Iterator[Callable[..., Launcher]]:
    started: list[Launcher] = []

    def start(*args: str) -> Launcher:
        started.append(Launcher(repo, *args))
        return started[-1]

    yield start
    for launcher in started:
        launcher.close()


def test_a_dead_backend_is_reloaded_and_readiness_is_false_until_it_is(launch) -> None:
    launcher = launch()
    url = f"127.0.0.1:{launcher.grpc}"
    assert _add_two(url) == 2.0
    stub = next(s for s in backend_stubs(launcher.triton.pid) if s.model == "add_one")
    os.kill(stub.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert "not healthy" in str(_add_two(url))  # Triton's own answer, before the launcher acts
    _wait(lambda: launcher.health_status("ready") == 503, 5)
    _wait(lambda: launcher.health_status("ready") == 200, 30)
    assert _add_two(url) == 2.0
    recovered = time.monotonic() - killed
    assert launcher.metric("triton_stack_model_recoveries_total") == 1
    assert launcher.metric("triton_stack_backend_failures_total") == 1
    assert 0 < launcher.metric("triton_stack_last_recovery_seconds") < recovered
    assert launcher.health_status("live") == 200
    stubs = [s.pid for s in backend_stubs(launcher.triton.pid)]
    launcher.proc.send_signal(signal.SIGTERM)
    # the dead instance never finishes unloading in Triton 2.51; the launcher does not wait for it
    assert launcher.proc.wait(25) == 0
    out = launcher.output()
    assert "backend of model 'add_one' died" in out and "model 'add_one' recovered" in out
    assert not set(stubs) & set(_stubs_anywhere())


def test_without_healing_a_dead_backend_makes_the_launcher_exit_1(launch) -> None:
    launcher = launch("--no-heal")
    triton = launcher.triton
    stub = next(s for s in backend_stubs(triton.pid) if s.model == "add_one")
    os.kill(stub.pid, signal.SIGKILL)
    assert launcher.proc.wait(60) == 1
    out = launcher.output()
    assert "the backend of model 'add_one' died and healing is off (--no-heal); giving up" in out
    assert not triton.is_running() and stub.pid not in _stubs_anywhere()


def test_a_killed_tritonserver_is_restarted_and_its_stubs_do_not_survive(launch) -> None:
    launcher = launch("--restart-on-failure", "1")
    triton = launcher.triton
    old_stubs = [s.pid for s in backend_stubs(triton.pid)]
    assert old_stubs
    triton.kill()  # as the OOM killer would
    _wait(lambda: launcher.health_status("ready") == 503, 10)
    _wait(lambda: launcher.health_status("ready") == 200, 60)
    assert _add_two(f"127.0.0.1:{launcher.grpc}") == 2.0
    assert not set(old_stubs) & set(_stubs_anywhere()), "the dead Triton's stubs were left running"
    assert launcher.metric("triton_stack_tritonserver_restarts_total") == 1


def test_sigkill_of_the_launcher_takes_triton_and_its_stubs_down(launch) -> None:
    launcher = launch()
    triton = launcher.triton
    stubs = [s.pid for s in backend_stubs(triton.pid)]
    launcher.proc.kill()
    launcher.proc.wait()
    _wait(lambda: not triton.is_running() or triton.status() == psutil.STATUS_ZOMBIE, 60)
    _wait(lambda: not set(stubs) & set(_stubs_anywhere()), 30)


def test_a_launcher_started_after_a_sigkilled_one_serves_on_the_same_ports(repo) -> None:
    """The fault matrix: with SIGTERM as its parent-death signal, the orphaned Triton unloaded
    every model, then held its ports for --exit-timeout answering NOT_FOUND, and the launcher a
    restart policy started next failed with PortInUse. It now dies at once with its launcher."""
    first = Launcher(repo)
    first.proc.kill()
    first.proc.wait()
    time.sleep(1.0)  # a restart policy's delay
    second = subprocess.Popen(
        [sys.executable, "-m", "tritonstack.server", "serve", "--model-repository", str(repo),
         f"--grpc-port={first.grpc}", f"--http-port={first.http}", f"--metrics-port={first.metrics}",
         f"--health-port={first.health}", "--exit-timeout=10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: first.health_status("ready") == 200 or second.poll() is not None, 60)
        assert second.poll() is None, second.communicate()[0][-2000:]
        assert _add_two(f"127.0.0.1:{first.grpc}") == 2.0
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)


@pytest.mark.parametrize(("args", "message"), [
    (["--restrict", "bogus"], "--restrict bogus: not a Triton protocol group"),
    (["--health-port", "70000"], "--health-port must be 0-65535"),
    (["--restart-on-failure", "-1"], "--restart-on-failure must be 0..1000"),
    (["--health-interval", "0"], "argument --health-interval: '0' must be above zero"),
    # issue #32, item 13: taken without a check before
    (["--exit-timeout", "-5"], "'-5' is not a duration"),
    (["--exit-timeout", "4000"], "--exit-timeout must be 0..3600 seconds"),
    (["--ready-timeout", "nan"], "'nan' is not a duration"),
    (["--ready-timeout", "-1"], "'-1' is not a duration"),
    (["--ready-timeout", "2d"], "'2d' is not a duration"),
    (["--model-control", "poll", "--poll-interval", "0"], "--poll-interval must be 1..3600 seconds"),
    (["--model-repository", ""], "--model-repository is empty"),
])
def test_bad_launcher_options_are_one_line_and_exit_2(repo, args, message) -> None:
    env = dict(os.environ, TRITON_ACCESS_TOKEN="t")
    proc = subprocess.run([sys.executable, "-m", "tritonstack.server", "serve", "--model-repository", str(repo), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _kill_add_one_stub(server) -> int:
    stub = next(s for s in backend_stubs(server.pid) if s.model == "add_one" and not s.dead)
    os.kill(stub.pid, signal.SIGKILL)
    _wait(lambda: any(s.pid == stub.pid and s.dead for s in backend_stubs(server.pid)), 10)
    return stub.pid


def test_a_stub_that_dies_before_any_check_saw_it_is_healed_and_so_is_its_successor(repo) -> None:
    """A zombie keeps no command line: the launcher finds its model as the one short of live
    stubs. Killed before the first check, and again right after the heal (the new stub never
    seen alive either), add_one is reloaded each time; nothing restarts and add_two answers."""
    from tests.conftest import start_server
    from tritonstack.server import ModelControl
    from tritonstack.server.supervise import Supervisor, SupervisorConfig

    server = start_server(repo, model_control=ModelControl.EXPLICIT, load_models=("*",))
    lines: list[str] = []
    supervisor = Supervisor(server, SupervisorConfig(restart_on_failure=0), log=lines.append)
    try:
        for round_ in (1, 2):
            _kill_add_one_stub(server)  # before any check of this supervisor saw it alive
            assert supervisor.check() is None  # a zombie seen once: a suspect
            assert supervisor.check() is None, lines  # confirmed, blamed on add_one, reload started
            deadline = time.monotonic() + 30
            while not supervisor.ready:  # the reload runs on a worker; checks take its result
                assert time.monotonic() < deadline, lines
                time.sleep(0.2)
                assert supervisor.check() is None, lines
            assert supervisor.restarts == 0 and supervisor.healed == round_
            assert _add_two(server.grpc_url) == 2.0
        assert sum("backend of model 'add_one' died" in line for line in lines) == 2, lines
        assert not any("'?'" in line for line in lines), lines
    finally:
        server.stop(abandoned=supervisor.healed)


def test_a_triton_killed_during_a_heal_is_restarted_and_a_signal_still_stops_the_launcher(launch) -> None:
    """Issue #32, item 4: the reload ran on the thread that watches Triton; a Triton SIGKILLed
    during it left the call hanging (its stubs held the connection), nothing restarted for 75 s
    and SIGTERM did not stop the launcher. The reload now runs on a worker."""
    launcher = launch("--restart-on-failure", "2")
    url = f"127.0.0.1:{launcher.grpc}"
    stub = next(s for s in backend_stubs(launcher.triton.pid) if s.model == "add_one")
    triton = launcher.triton
    os.kill(stub.pid, signal.SIGKILL)
    _wait(lambda: launcher.health_status("ready") == 503, 10)  # found dead: its reload starts now
    triton.kill()
    _wait(lambda: launcher.health_status("ready") == 200, 60)
    assert _add_two(url) == 2.0
    assert launcher.metric("triton_stack_tritonserver_restarts_total") == 1
    stubs = [s.pid for s in backend_stubs(launcher.triton.pid)]
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.proc.wait(30) == 0
    assert not set(stubs) & set(_stubs_anywhere())


def test_a_stopped_stub_is_killed_and_its_model_reloaded(launch) -> None:
    """Issue #32, item 5: a SIGSTOPped stub left both readiness endpoints at 200 while its model
    answered nothing, and Triton aborted when it resumed."""
    launcher = launch()
    url = f"127.0.0.1:{launcher.grpc}"
    stub = next(s for s in backend_stubs(launcher.triton.pid) if s.model == "add_one")
    os.kill(stub.pid, signal.SIGSTOP)
    _wait(lambda: launcher.health_status("ready") == 503, 20)  # 5 s stopped, then killed and found dead
    _wait(lambda: launcher.health_status("ready") == 200, 30)
    assert _add_two(url) == 2.0
    assert not psutil.pid_exists(stub.pid) or psutil.Process(stub.pid).status() == psutil.STATUS_ZOMBIE
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.proc.wait(30) == 0
    out = launcher.output()
    assert f"backend stub {stub.pid} of model 'add_one' has been stopped for" in out
    assert "model 'add_one' recovered" in out


def _infer_add_one(url: str, model: str) -> float | str:
    inp = grpcclient.InferInput("INPUT", [1, 4], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with grpcclient.InferenceServerClient(url) as client:
        try:
            return float(client.infer(model, [inp]).as_numpy("OUTPUT")[0, 0])
        except Exception as exc:
            return str(exc)


def _sleeping_add_one(repo: Path, name: str, method: str, seconds: float) -> None:
    """add_one whose ``method`` (e.g. ``finalize(self)``) sleeps ``seconds`` first."""
    model_py = repos.write_add_one(repo, name) / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace(
        "    def execute(self, requests):",
        f"    def {method}:\n        import time\n        time.sleep({seconds})\n\n"
        "    def execute(self, requests):"))


def test_a_stub_killed_during_its_models_reload_is_healed_within_30_s(tmp_path: Path) -> None:
    """Issue #32: kill a stub, then kill its successor as the heal's reload starts it. Triton never
    returned from that load (measured: nothing for 150 s, the launcher waited --heal-timeout).
    The launcher now gives such a reload 10 s, then restarts Triton: the model answers again
    within 30 s, and a model beside it fails only while Triton restarts, with UNAVAILABLE (what a
    retrying client retries)."""
    repos.write_add_one(tmp_path, "steady")
    _sleeping_add_one(tmp_path, "slow", "initialize(self, args)", 3)
    launcher = Launcher(tmp_path, "--restart-on-failure", "1")
    url = f"127.0.0.1:{launcher.grpc}"
    answers: list[float | str] = []
    stop = threading.Event()

    def steady_traffic() -> None:
        while not stop.is_set():
            answers.append(_infer_add_one(url, "steady"))
            time.sleep(0.02)

    traffic = threading.Thread(target=steady_traffic)
    traffic.start()
    try:
        first = next(s for s in backend_stubs(launcher.triton.pid) if s.model == "slow")
        os.kill(first.pid, signal.SIGKILL)
        _wait(lambda: launcher.health_status("ready") == 503, 10)  # found dead: the reload starts

        def successor() -> list[int]:
            return [s.pid for s in backend_stubs(launcher.triton.pid)
                    if s.model == "slow" and s.pid != first.pid and not s.dead]

        _wait(lambda: bool(successor()), 10)
        os.kill(successor()[0], signal.SIGKILL)  # in its start-up
        killed = time.monotonic()
        try:
            _wait(lambda: launcher.health_status("ready") == 200 and _infer_add_one(url, "slow") == 1.0, 30)
        except AssertionError:
            stop.set()
            raise AssertionError(launcher.output()[-3000:]) from None
        assert time.monotonic() - killed < 30
    finally:
        stop.set()
        traffic.join()
        restarts = launcher.metric("triton_stack_tritonserver_restarts_total") if launcher.proc.poll() is None else -1
        launcher.close()
    failed = [a for a in answers if a != 1.0]
    assert answers and restarts in (0, 1)
    if restarts == 0:  # Triton answered the reload with an error, and the next attempt healed it
        assert not failed, failed[:3]
    assert all("UNAVAILABLE" in str(a) or "unavailable" in str(a).lower() for a in failed), failed[:3]


def test_readiness_stays_true_while_a_model_is_unloaded_on_purpose(tmp_path: Path) -> None:
    """Issue #32, found by the fault matrix's canary row: a rollout's promotion unloads the router
    and the old version, and the launcher said "not ready" for 2-2.5 s while every request was
    served, because Triton's strict readiness counts a model that is unloading. An orchestrator
    would take a serving replica out. An unload someone asked for is not a failure."""
    repos.write_add_one(tmp_path, "steady")
    _sleeping_add_one(tmp_path, "slow_exit", "finalize(self)", 4)
    launcher = Launcher(tmp_path)
    try:
        url = f"127.0.0.1:{launcher.grpc}"
        assert _infer_add_one(url, "slow_exit") == 1.0
        urllib.request.urlopen(urllib.request.Request(  # returns once the unload has begun
            f"http://127.0.0.1:{launcher.http}/v2/repository/models/slow_exit/unload", data=b"{}",
            method="POST"), timeout=60).read()
        seen, answers, end = [], [], time.monotonic() + 6  # its finalize sleeps 4 s
        while time.monotonic() < end:
            seen.append(launcher.health_status("ready"))
            answers.append(_infer_add_one(url, "steady"))
            time.sleep(0.1)
        assert set(seen) == {200}, f"not ready during an unload asked for: {seen}"
        assert set(answers) == {1.0}
        # a model that fails is still seen: a dead stub turns readiness off (the tests above)
    finally:
        launcher.close()
