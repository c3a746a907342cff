"""``python -m tritonstack.loadtest compare``: the gates, the noise treatment, the reports, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.loadtest import summaries
from tritonstack.loadtest.cli import main
from tritonstack.loadtest.report import compare
from tritonstack.loadtest.report.machine import Machine


def _summary(folder: Path, p99s: list[float], rps: list[float], machine: Machine = summaries.XEON) -> Path:
    """A run folder whose windows measured these p99s and rates (the totals are their means)."""
    def stats(p99: float, r: float) -> dict:
        row = summaries.row(r, p99)
        return {"embed": row, "Aggregated": row}

    windows = [{"name": f"w{i}", "stats": stats(p, r)}
               for i, (p, r) in enumerate(zip(p99s, rps, strict=True))]
    total = stats(sum(p99s) / len(p99s), sum(rps) / len(rps))
    return summaries.save(folder, summaries.make(stats=total, windows=windows, machine=machine))


def test_a_p99_regression_past_the_bound_fails_with_its_interval(tmp_path, capsys) -> None:
    a = _summary(tmp_path / "a", [50, 52, 49, 51, 50, 50, 51, 50], [300, 301, 299, 300, 300, 300, 299, 301])
    b = _summary(tmp_path / "b", [60, 61, 59, 62, 60, 60, 61, 60], [298, 300, 299, 301, 300, 300, 299, 301])
    code = main(["compare", str(a), str(b), "--max-p99-regression", "10%", "--max-rps-regression", "5%",
                 "--out", str(tmp_path / "out"), "--json"])
    assert code == 1
    changes = {(c["traffic"], c["metric"]): c for c in json.loads(capsys.readouterr().out)["changes"]}
    p99 = changes["embed", "p99_ms"]
    assert p99["crossed"] and p99["change"] == pytest.approx(60.375 / 50.375 - 1)
    assert p99["method"] == "bootstrap" and p99["windows"] == [8, 8]  # 8 windows each: bootstrap
    assert p99["interval"][0] > 0.1 and not p99["within_noise"]  # the runs can tell
    assert not changes["embed", "rps"]["crossed"] and changes["embed", "rps"]["within_noise"]
    assert "REGRESSION" in (tmp_path / "out" / "compare.md").read_text()
    assert "<table>" in (tmp_path / "out" / "compare.html").read_text()


def test_no_bound_crossed_passes_and_single_windows_say_so(tmp_path, capsys) -> None:
    a = _summary(tmp_path / "a", [50], [300])
    b = _summary(tmp_path / "b", [52], [290])
    assert main(["compare", str(a), str(b), "--max-p99-regression", "10%", "--max-rps-regression", "5%",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "inconclusive: single measurement" in out and "+4.0%" in out and "-3.3%" in out
    assert "within noise" not in out and "warning" not in out  # same machine


def test_few_windows_get_a_t_interval_not_a_bootstrap(tmp_path, capsys) -> None:
    """Issue #33 item 6: 3 windows a run were called "within noise" by a bootstrap that cannot
    resample beyond the 3 values seen; with fewer than 8 the interval is Welch's t."""
    a = _summary(tmp_path / "a", [50, 51, 49], [300, 300, 300])
    b = _summary(tmp_path / "b", [53, 52, 54], [300, 300, 300])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--json"]) == 0
    changes = {(c["traffic"], c["metric"]): c for c in json.loads(capsys.readouterr().out)["changes"]}
    p99 = changes["embed", "p99_ms"]
    assert p99["method"] == "welch-t" and p99["windows"] == [3, 3]
    # means 50 and 53, both sample sd 1: se = sqrt(2/3), df = 4, t = 2.776 -> 3 +- 2.267 ms, over 50
    assert p99["interval"] == pytest.approx([(3 - 2.776 * (2 / 3) ** 0.5) / 50, (3 + 2.776 * (2 / 3) ** 0.5) / 50],
                                            rel=1e-3)
    assert not p99["within_noise"]
    # the same 3 values bootstrapped: a much narrower interval (what was reported before)
    lo, hi = compare._bootstrap([50, 51, 49], [53, 52, 54])
    assert hi - lo < p99["interval"][1] - p99["interval"][0]
    a2 = _summary(tmp_path / "a2", [50, 58, 42], [300, 300, 300])
    b2 = _summary(tmp_path / "b2", [53, 61, 45], [300, 300, 300])
    assert main(["compare", str(a2), str(b2), "--out", str(tmp_path / "out2"), "--json"]) == 0
    wide = {(c["traffic"], c["metric"]): c for c in json.loads(capsys.readouterr().out)["changes"]}
    assert wide["embed", "p99_ms"]["within_noise"]  # sd 8 per run: a t-interval cannot tell 3 ms


def test_t_quantiles() -> None:
    assert compare.t975(1) == 12.706 and compare.t975(4) == 2.776 and compare.t975(4.9) == 2.776
    assert compare.t975(30) == 2.042 and compare.t975(45) == 2.021 and compare.t975(1000) == 1.980


def test_runs_on_different_cpus_are_warned_about(tmp_path, capsys) -> None:
    a = _summary(tmp_path / "a", [50], [300])
    zen = dataclasses.replace(summaries.XEON, cpu="AMD EPYC 9R45 (Zen 5)", int8=("avx512_vnni", "avx2"))
    b = _summary(tmp_path / "b", [50], [300], machine=zen)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "warning: A and B ran on different machines" in out and "AMD EPYC 9R45" in out
    assert "Intel(R) Xeon(R) Processor, 2 cores (avx512_vnni, amx_int8, avx2), no GPU" in out
    assert "different machines" in (tmp_path / "out" / "compare.html").read_text()


def test_an_old_summary_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"campaign": "c", "slo_window": {"stats": {}}, "windows": []}))
    a = _summary(tmp_path / "a", [50], [300])
    assert main(["compare", str(a), str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ReportError: ") and "another loadtest version (no schema" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--max-p99-regression", "ten"], "'ten' is not a percentage"),
    (["--max-p99-regression=-5%"], "between 0% and 1000%"),
])
def test_bad_bounds_are_refused(tmp_path, capsys, extra, message) -> None:
    a = _summary(tmp_path / "a", [50], [300])
    assert main(["compare", str(a), str(a), *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_run_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope does not exist; pass the report folder" in err and len(err.splitlines()) == 1
