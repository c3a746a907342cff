"""The loadtest command line under the shared convention (tritonstack/cli.py), its one-line refusals,
the Prometheus parsing and the machine record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonstack.cli import ExitCode
from tritonstack.loadtest.cli import build_tool, main
from tritonstack.loadtest.report import machine
from tritonstack.loadtest.runner import metrics

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_command_is_built_by_the_tool_with_the_shared_names(capsys: pytest.CaptureFixture[str]) -> None:
    tool = build_tool()
    assert tool.json_commands == {"run", "find-max", "validate", "list", "perf-analyzer", "cost", "compare",
                                  "heal-drill", "bench-pipelines"}
    for command in ("run", "find-max", "perf-analyzer", "compare", "cost", "heal-drill", "bench-pipelines"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "exit codes: 0 ok, 1 a check failed" in text and "--json" in text and "--verbose" in text
        assert "%%" not in text, command  # `compare --help` printed a literal 95%%
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--url HOST:PORT", "--metrics-url URL", "--model-repository DIR", "--out DIR", "--capacity RPS",
                 "--capacity-from DIR"):
        assert flag in text


def test_global_flags_go_before_or_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "validate", "smoke"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["validate", "smoke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == before and before[0]["campaign"] == "smoke"
    with pytest.raises(SystemExit) as done:
        main(["worker", "smoke", "--json"])  # no JSON form: refused, not ignored
    assert done.value.code == ExitCode.USAGE
    assert "'worker' has no JSON output" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["heal-drill", "--model-repository", "x", "--timeout", "soon"], "'soon' is not a duration"),
    (["perf-analyzer", "embed", "--duration", "0s"], "must be above zero"),
    (["run", "smoke", "--grpc-url", "x"], "the old --grpc, --metrics and --report-dir are --url, --metrics-url"),
])
def test_bad_command_lines_are_one_line_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                     message: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "--help" in err


def test_durations_and_refusals_after_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2m parses as 120 s and is then checked against the drill's bound, before anything starts
    assert main(["heal-drill", "--model-repository", str(tmp_path / "none"), "--timeout", "20m"]) == 2
    assert "--timeout must be 1s..10m, got 1200 s" in capsys.readouterr().err
    assert main(["heal-drill", "--model-repository", str(tmp_path / "none"), "--timeout", "2m"]) == 2
    assert "does not exist; build it first" in capsys.readouterr().err
    assert main(["run", "smoke", "--url", "a:1", "--url", "b:2"]) == 2
    assert "--url given 2 times" in capsys.readouterr().err
    assert main(["bench-pipelines", "--concurrency", "8,x"]) == 2
    assert "--concurrency takes whole numbers" in capsys.readouterr().err


def test_cost_reads_a_report_folder_and_names_the_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "smoke-run"
    folder.mkdir()
    (folder / "summary.json").write_text((FIXTURES / "summary-cpu.json").read_text())
    assert main(["cost", str(folder), "--gpu", "L4", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["rps"] == 200.0 and row["source"] == "measured on CPU Intel(R) Xeon(R) Processor (2 cores), priced as L4"
    assert main(["cost", str(tmp_path)]) == 2  # a folder without summary.json: one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("CostInputError: report ") and "summary.json does not exist" in err
    assert len(err.splitlines()) == 1


def test_prometheus_text_is_parsed_by_prometheus_client() -> None:
    text = "\n".join([
        "# HELP nv_inference_request_success Number of successful inference requests",
        "# TYPE nv_inference_request_success counter",
        'nv_inference_request_success{model="embed",version="1"} 10',
        'nv_inference_request_success{model="embed",version="2"} 5',
        'nv_inference_request_success{version="1",model="a \\"quoted\\", model"} 3',  # labels in any order
        "# TYPE nv_inference_exec_count counter",
        'nv_inference_exec_count{model="embed",version="1"} 4 1700000000000',  # with a timestamp
        "# TYPE triton_stack_data_quality_total counter",
        'triton_stack_data_quality_total{model="embed",reason="empty"} 2',
        "# TYPE triton_stack_drift_psi gauge",
        'triton_stack_drift_psi{model="embed",version="1",feature="tokens"} 0.4',
        'triton_stack_drift_window_rows{model="embed",version="1"} 500',
    ])
    counters = metrics.parse_prometheus(text)
    assert counters["embed"]["nv_inference_request_success"] == 15  # summed over versions
    assert counters["embed"]["nv_inference_exec_count"] == 4
    assert counters['a "quoted", model']["nv_inference_request_success"] == 3  # the regex lost this one
    monitoring = metrics.parse_monitoring(text)
    assert monitoring["data_quality"] == {"embed": {"empty": 2.0}}
    assert monitoring["drift"] == [{"model": "embed", "version": "1", "feature": "tokens", "psi": 0.4,
                                    "window_rows": 500.0, "shifted": True}]
    assert metrics.parse_prometheus("not { prometheus") == {}  # malformed: nothing, no exception


def test_machine_record_from_cpuinfo() -> None:
    text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 amx_int8 avx512_vnni\n" * 2
    assert machine.cpu_from_cpuinfo(text) == ("Intel(R) Xeon(R) Processor", ("avx512_vnni", "amx_int8", "avx2"))
    assert machine.cpu_from_cpuinfo("model name : Old\nflags : sse2\n") == ("Old", ())
    here = machine.detect()
    assert here.cores >= 1 and here.cpu and (len(here.server_commit) == 40 or here.server_commit == "unknown")
    assert machine.Machine.from_dict(here.to_dict()) == here
    import socket

    assert socket.gethostname() not in json.dumps(here.to_dict())
