"""`python -m tritonstack.loadtest cost`: price table, report reading, arithmetic, recommendation, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tritonstack.loadtest.cost import cloud as cost

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]

PRICES = FIXTURES / "gpus.toml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tritonstack.loadtest", "cost", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_shipped_price_table_loads_with_the_five_gpus() -> None:
    gpus = cost.load_prices()
    assert list(gpus) == ["T4", "L4", "A10G", "A100", "H100"]
    assert all(g.hourly_usd > 0 and g.memory_gib > 0 for g in gpus.values())


@pytest.mark.parametrize(("entry", "message"), [
    ('hourly_usd = "cheap"\nmemory_gib = 16\nfp16_tflops = 65\nmemory_bandwidth_gbs = 320',
     "[gpus.T4]: hourly_usd must be a positive number, got 'cheap'"),
    ("hourly_usd = 0.5\nmemory_gib = 16\nfp16_tflops = 65", "[gpus.T4] is missing memory_bandwidth_gbs"),
    ("hourly_usd = -1\nmemory_gib = 16\nfp16_tflops = 65\nmemory_bandwidth_gbs = 320",
     "hourly_usd must be a positive number, got -1"),
    ("hourly_usdd = 0.5\nmemory_gib = 16\nfp16_tflops = 65\nmemory_bandwidth_gbs = 320",
     "unknown key 'hourly_usdd'; did you mean 'hourly_usd'?"),
    ("hourly_usd = 0.5\nmemory_gib = ", "is not valid TOML"),
])
def test_malformed_price_entry_is_named(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "gpus.toml"
    path.write_text("[gpus.T4]\n" + entry + "\n")
    with pytest.raises(cost.CostInputError) as info:
        cost.load_prices(path)
    assert message in str(info.value)
    proc = _run(str(FIXTURES / "summary-cpu.json"), "--gpu", "T4", "--prices", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("CostInputError: ") and "Traceback" not in proc.stderr


def test_report_reading_prefers_find_max_capacity() -> None:
    t4 = cost.read_report(FIXTURES / "summary-t4.json")
    assert (t4.rps, t4.p99_ms, t4.slo_passed) == (1000.0, 80.0, True)
    cpu = cost.read_report(FIXTURES / "summary-cpu.json")
    assert (cpu.rps, cpu.p99_ms, cpu.slo_passed) == (200.0, 12.0, True)
    assert cpu.device == "CPU Intel(R) Xeon(R) Processor (2 cores)"  # the machine record, not "unnamed"
    assert t4.device == "Tesla T4" and cost.same_gpu(t4.device, "T4") and not cost.same_gpu(t4.device, "L4")
    assert cost.read_report(FIXTURES / "summary-a10g-failed.json").slo_passed is False


def test_bad_report_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "summary.json"
    empty.write_text(json.dumps({"campaign": "x"}))
    with pytest.raises(cost.CostInputError, match="has no throughput"):
        cost.read_report(empty)
    with pytest.raises(cost.CostInputError, match="does not exist"):
        cost.read_report(tmp_path / "missing.json")
    empty.write_text("not json")
    with pytest.raises(cost.CostInputError, match="is not JSON"):
        cost.read_report(empty)
    empty.write_text(json.dumps({"campaign": "x", "slo_window": {"stats": {"Aggregated": {"rps": 5.0}}}}))
    with pytest.raises(cost.CostInputError, match="written by another loadtest version"):
        cost.read_report(empty)  # an older summary (no schema, no machine record): rerun it


def test_a_report_folder_is_read_and_an_empty_one_is_one_line(tmp_path: Path) -> None:
    """Issue #32, item 3: `loadtest cost REPORT_FOLDER` ended in a traceback (IsADirectoryError)."""
    folder = tmp_path / "smoke-20261205"
    folder.mkdir()
    proc = _run(str(folder), "--prices", str(PRICES), "--gpu", "L4")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "summary.json does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (folder / "summary.json").write_text((FIXTURES / "summary-cpu.json").read_text())
    assert cost.read_report(folder).rps == 200.0


def test_dollars_per_million_for_one_gpu() -> None:
    proc = _run(str(FIXTURES / "summary-t4.json"), "--gpu", "T4", "--prices", str(PRICES),
                "--utilization", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    # 1000 req/s -> 3.6 M req per GPU-hour -> 0.2778 GPU-h per M -> $0.1389 at $0.50/h, $0.2778 at 50 %.
    assert row["gpu_hours_per_million"] == pytest.approx(1 / 3.6)
    assert row["usd_per_million"] == pytest.approx(0.5 / 3.6)
    assert row["usd_per_million_at_utilization"] == pytest.approx(1 / 3.6)


def test_recommends_cheapest_gpu_that_met_its_slo() -> None:
    proc = _run(f"T4={FIXTURES / 'summary-t4.json'}", f"L4={FIXTURES / 'summary-l4.json'}",
                f"A10G={FIXTURES / 'summary-a10g-failed.json'}", "--prices", str(PRICES),
                "--utilization", "0.5")
    assert proc.returncode == 0, proc.stderr
    # A10G is cheapest per request ($0.0617/M busy) but failed its SLO; L4 ($0.2222/M at 50 %)
    # beats T4 ($0.2778/M).
    assert "Recommendation: L4: $0.2222 per million requests at 50% utilisation" in proc.stdout
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:4]}
    assert "FAIL" in lines["A10G"] and "0.0617" in lines["A10G"]


def test_no_report_met_its_slo_exits_1() -> None:
    proc = _run(f"A10G={FIXTURES / 'summary-a10g-failed.json'}", "--prices", str(PRICES))
    assert proc.returncode == 1
    assert "No recommendation" in proc.stdout


def test_estimates_are_labelled_and_never_recommended() -> None:
    proc = _run(str(FIXTURES / "summary-t4.json"), "--gpu", "T4", "--estimate-from", "T4",
                "--prices", str(PRICES), "--json")
    data = json.loads(proc.stdout)
    estimates = [r for r in data["rows"] if r["estimate"]]
    assert {r["gpu"] for r in estimates} == {"L4", "A10G"}
    assert all(r["source"].startswith("ESTIMATE") and r["slo_passed"] is None for r in estimates)
    assert data["recommendation"]["gpu"] == "T4"


def test_rps_override_and_foreign_device_are_stated(tmp_path: Path) -> None:
    path = FIXTURES / "summary-cpu.json"  # measured on this Xeon, no GPU: its machine record says so
    proc = _run(str(path), "--gpu", "L4", "--prices", str(PRICES))
    assert "measured on CPU Intel(R) Xeon(R) Processor (2 cores), priced as L4" in proc.stdout
    assert "note: throughput was measured on CPU Intel(R) Xeon(R) Processor (2 cores)" in proc.stdout
    assert "unnamed" not in proc.stdout
    proc = _run(str(path), "--prices", str(PRICES))  # no --gpu: every GPU at the same rate, and where it was measured
    assert "measured on CPU Intel(R) Xeon(R) Processor (2 cores), same RPS assumed for every GPU" in proc.stdout
    proc = _run(str(path), "--gpu", "L4", "--rps", "3600", "--prices", str(PRICES), "--json")
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["source"] == "--rps" and row["usd_per_million"] == pytest.approx(0.8 / 12.96)


@pytest.mark.parametrize(("args", "message"), [
    (["--gpu", "L5"], "unknown GPU 'L5'; did you mean 'L4'?"),
    (["--gpu", "L4", "--utilization", "1.5"], "--utilization must be in (0, 1]"),
    (["--gpu", "L4", "--estimate-from", "T4"], "no report is for T4"),
])
def test_bad_options_exit_2(args: list[str], message: str) -> None:
    proc = _run(str(FIXTURES / "summary-cpu.json"), "--prices", str(PRICES), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.triton
def test_cost_on_a_real_load_test_report(tiny_server, tmp_path: Path) -> None:
    """A real (short, bounded) campaign against a real Triton, then the cost of its summary.json."""
    campaign = tmp_path / "tiny.toml"
    campaign.write_text(textwrap.dedent("""\
        name = "tiny-cost"
        slo = ["p99_ms < 2000", "error_rate <= 0"]

        [[traffic]]
        model = "add_one"
        inputs = { INPUT = { datatype = "FP32", shape = [1, 4] } }

        [[stages]]
        name = "hold"
        duration_s = 3
        users = 4
        rps = 40
        """))
    report_dir = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "tritonstack.loadtest", "run", str(campaign),
                          "--url", tiny_server.grpc_url, "--metrics-url", tiny_server.metrics_url,
                          "--out", str(report_dir)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (report_dir / "summary.json").is_file(), run.stdout + run.stderr
    proc = _run(str(report_dir), "--gpu", "L4", "--json")  # the folder, read as its summary.json
    assert proc.returncode == (0 if run.returncode == 0 else 1), proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["machine"]["cores"] >= 1 and "measured on CPU " in row["source"]
    assert row["rps"] == pytest.approx(summary["slo_window"]["stats"]["Aggregated"]["rps"])
    assert row["gpu_hours_per_million"] == pytest.approx(1e6 / (3600 * row["rps"]))
    price = cost.load_prices()["L4"].hourly_usd
    assert row["usd_per_million"] == pytest.approx(row["gpu_hours_per_million"] * price)
