"""Bounded campaigns through a real Triton (``add_one``): mechanics, not speed.

Each run asserts what the campaign did (requests counted, report files, verdicts, exit codes);
none asserts how fast anything was.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.cli import main
from tritonstack.server import TritonServer

pytestmark = pytest.mark.triton

ADD_ONE = {"model": "add_one", "inputs": {"INPUT": {"datatype": "FP32", "shape": [1, 4], "value": 2.0}}}


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + body + """
[[traffic]]
model = "add_one"
[traffic.inputs.INPUT]
datatype = "FP32"
shape = [1, 4]
""")
    return path


def _args(server: TritonServer, campaign: Path, report: Path, *extra: str) -> list[str]:
    return ["run", str(campaign), "--url", server.grpc_url, "--metrics-url", server.metrics_url,
            "--out", str(report), *extra]


def test_step_campaign_counts_requests_and_writes_every_report(
        tiny_server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaign = _write(tmp_path, "steps", """slo = ["p99_ms < 5000", "error_rate <= 0", "requests >= 1"]
[steps]
users = 4
start_rps = 20
stop_rps = 40
step_rps = 20
duration_s = 2.5
warmup_s = 0.5
""")
    report = tmp_path / "report"
    assert main(_args(tiny_server, campaign, report)) == 0
    out = capsys.readouterr().out
    assert "SLO verdict: PASS (3 SLOs)" in out
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust.html", "summary.json", "report.md",
                 "latency-vs-throughput.png"):
        assert (report / name).stat().st_size > 0, name
    summary = json.loads((report / "summary.json").read_text())
    assert summary["passed"] and [w["target_rps"] for w in summary["windows"]] == [20, 40]
    measured = summary["slo_window"]["stats"]["Aggregated"]
    assert measured["requests"] > 0 and measured["errors"] == 0
    assert summary["slo_window"]["stats"]["add_one"]["requests"] == measured["requests"]
    with (report / "locust_stats.csv").open() as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["add_one"]["Request Count"]) >= measured["requests"]
    assert rows["add_one"]["Type"] == "grpc" and int(rows["add_one"]["Failure Count"]) == 0
    gen = summary["generator"]
    assert gen["requests"] >= measured["requests"] and gen["cpu_us_per_request"] > 0
    # Triton's own counters saw the same traffic, batched by the dynamic batcher.
    assert summary["server"]["models"]["add_one"]["requests"] >= measured["requests"]
    assert summary["server"]["cpu_pct"] is not None
    text = (report / "report.md").read_text()
    assert "| add_one |" in text and "µs CPU per request" in text and "avg batch" in text
    page = (report / "report.html").read_text()  # one self-contained page per run
    assert "report.html" in summary["files"] and "PASS</span></h1>" in page
    for section in ("SLOs", "Traffic (measured window)", "Throughput and refusals over time",
                    "Latency over time", "Latency distribution", "Triton per model", "Machine and versions"):
        assert f"<h2>{section}" in page, section
    assert f"<td>{measured['rps']:,.1f}</td>" in page and "src='data:image/png;base64," in page
    assert "src='http" not in page and "href=" not in page and "<script" not in page  # nothing fetched
    # the machine it ran on, in summary.json and both reports (issue #33, item 4)
    machine = summary["schema"] == 2 and summary["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and set(machine["int8"]) <= {"avx512_vnni", "amx_int8", "avx2"}
    assert len(machine["server_commit"]) == 40 or machine["server_commit"] == "unknown"
    assert "Machine: " in text and machine["cpu"] in text and machine["cpu"] in page
    import socket

    assert socket.gethostname() not in (report / "summary.json").read_text()  # hostname-free


def test_a_long_stage_is_recorded_as_windows_with_server_memory(
        tiny_server: TritonServer, tmp_path: Path) -> None:
    campaign = _write(tmp_path, "soakish", """slo = ["error_rate <= 0"]
[[stages]]
duration_s = 3.6
users = 2
rps = 20
window_s = 1
""")
    report = tmp_path / "r"
    assert main(_args(tiny_server, campaign, report)) == 0
    summary = json.loads((report / "summary.json").read_text())
    windows = summary["windows"]
    assert len(windows) >= 3 and windows[0]["name"].startswith("stage1 [0-1 s]")
    assert all(w["server_rss_mb"] > 10 for w in windows)  # tritonserver and its stubs
    assert summary["server"]["memory"]["samples"] == len(windows)
    # Per process: the server itself and the add_one model's backend stub, by instance name.
    by_process = summary["server"]["memory_by_process"]
    assert "tritonserver" in by_process and any(label.startswith("add_one_") for label in by_process)
    assert sum(m["last_mb"] for m in by_process.values()) == pytest.approx(windows[-1]["server_rss_mb"])
    assert (report / "over-time.png").stat().st_size > 0
    text = (report / "report.md").read_text()
    assert "## Server memory" in text and "over the second half" in text and "| tritonserver |" in text


def test_failing_slo_exits_1_and_says_by_how_much(
        tiny_server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaign = _write(tmp_path, "too-fast", """slo = ["rps >= 1000000", "error_rate <= 0"]
[[stages]]
duration_s = 2
users = 2
rps = 10
""")
    assert main(_args(tiny_server, campaign, tmp_path / "r")) == 1
    out = capsys.readouterr().out
    assert "FAIL rps >= 1e+06: measured" in out and "short)" in out
    assert "PASS error_rate <= 0" in out and "SLO verdict: FAIL (1 of 2 SLOs failed)" in out
    assert not json.loads((tmp_path / "r" / "summary.json").read_text())["passed"]


def test_find_max_reports_the_highest_passing_step(
        tiny_server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # add_one sleeps 20 ms per batch of <= 8, so a p99 limit of 1 ms fails every step: the
    # search must end (bounded) and say so; then a generous limit finds a maximum.
    strict = _write(tmp_path, "fm-strict", """slo = ["p99_ms < 1", "error_rate <= 0"]
[find_max]
users = 4
start_rps = 20
step_rps = 20
max_rps = 40
step_s = 2
warmup_s = 0.5
bisect_rounds = 1
""")
    assert main(["find-max", *_args(tiny_server, strict, tmp_path / "a")[1:]]) == 1
    assert "find-max: no step met the SLOs" in capsys.readouterr().out
    loose = _write(tmp_path, "fm-loose", strict.read_text().split("\n", 1)[1].split("[[traffic]]")[0]
                   .replace('"p99_ms < 1"', '"p99_ms < 5000"'))
    assert main(["find-max", *_args(tiny_server, loose, tmp_path / "b")[1:]]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["find_max"]["target_rps"] == 40 and summary["find_max"]["max_rps"] > 0
    assert [w["passed"] for w in summary["windows"]] == [True, True]
    assert (tmp_path / "b" / "latency-vs-throughput.png").exists()


def test_two_locust_processes_share_the_load(tiny_server: TritonServer, tmp_path: Path) -> None:
    campaign = _write(tmp_path, "procs", """slo = ["error_rate <= 0"]
[[stages]]
duration_s = 4
users = 4
rps = 40
warmup_s = 1
""")
    assert main(_args(tiny_server, campaign, tmp_path / "r", "--processes", "2")) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    senders = [p for p in summary["generator"]["processes"] if p["requests"]]
    assert len(senders) == 2 and summary["slo_window"]["stats"]["Aggregated"]["requests"] > 0


def test_unreachable_target_and_unknown_model_are_one_line_errors(
        tiny_server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaign = _write(tmp_path, "c", 'slo = ["error_rate <= 0"]\n[[stages]]\nduration_s = 1\nusers = 1\n')
    from tritonstack.server import free_port

    assert main(["run", str(campaign), "--url", f"127.0.0.1:{free_port()}", "--metrics-url", "",
                 "--out", str(tmp_path / "x")]) == 3
    assert capsys.readouterr().err.startswith("TargetError: no Triton answers gRPC at 127.0.0.1:")
    other = tmp_path / "other.toml"
    other.write_text(campaign.read_text().replace('model = "add_one"', 'model = "nope"'))
    assert main(_args(tiny_server, other, tmp_path / "y")) == 3
    err = capsys.readouterr().err
    assert "model 'nope' is not ready" in err and "add_one" in err
    bad_input = tmp_path / "bad_input.toml"
    bad_input.write_text(campaign.read_text().replace("shape = [1, 4]", "shape = [1, 5]"))
    assert main(_args(tiny_server, bad_input, tmp_path / "z")) == 3
    assert "a test request to 'add_one' failed: INVALID_ARGUMENT" in capsys.readouterr().err


def test_library_api_runs_a_campaign(tiny_server: TritonServer, tmp_path: Path) -> None:
    from tritonstack.loadtest import RunOptions, run

    c = campaigns.parse({"traffic": [ADD_ONE], "slo": ["errors <= 0"],
                         "stages": [{"duration_s": 2, "users": 2, "rps": 20}]}, "api")
    result = run(c, RunOptions(report_dir=tmp_path, grpc=tiny_server.grpc_url, metrics_url=""))
    assert result.passed and result.report_dir == tmp_path
    assert result.summary.stats["add_one"]["requests"] > 0
    assert result.summary.server.models == {}  # metrics skipped: no table, no failure
    # the server's own CPU per request, read from /proc for a server on this machine (issue #35)
    assert result.summary.server.cpu_us_per_request and result.summary.server.cpu_us_per_request > 0
    assert "µs CPU per request" in (tmp_path / "report.md").read_text()


def test_crosscheck_with_perf_analyzer_writes_next_to_the_locust_report(
        tiny_server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaign = _write(tmp_path, "xc", 'slo = ["error_rate <= 0"]\n[[stages]]\nduration_s = 2\nusers = 2\n'
                                      'rps = 20\n')
    report = tmp_path / "r"
    assert main([*_args(tiny_server, campaign, report), "--crosscheck"]) == 0
    assert "perf_analyzer (request rate 20):" in capsys.readouterr().out
    result = json.loads((report / "perf_analyzer.json").read_text())
    assert result["model"] == "add_one" and result["rps"] > 0 and result["p99_ms"] > 0
    assert (report / "perf_analyzer.csv").exists() and (report / "locust_stats.csv").exists()
    assert "Cross-check: perf_analyzer on add_one" in (report / "report.md").read_text()
