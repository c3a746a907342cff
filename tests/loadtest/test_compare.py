"""``python -m tritonstack.loadtest compare``: the gates, the noise treatment, the reports, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonstack.loadtest.cli import main


def _summary(folder: Path, p99s: list[float], rps: list[float]) -> Path:
    """A run folder whose windows measured these p99s and rates (the totals are their means)."""
    def stats(p99: float, r: float) -> dict:
        row = {"requests": 1000.0, "errors": 0.0, "rps": r, "p50_ms": p99 / 3, "p99_ms": p99}
        return {"embed": row, "Aggregated": row}

    windows = [{"name": f"w{i}", "stats": stats(p, r)}
               for i, (p, r) in enumerate(zip(p99s, rps, strict=True))]
    folder.mkdir(parents=True)
    total = stats(sum(p99s) / len(p99s), sum(rps) / len(rps))
    (folder / "summary.json").write_text(json.dumps({"campaign": "c", "slo_window": {"stats": total},
                                                     "windows": windows}))
    return folder


def test_a_p99_regression_past_the_bound_fails_with_its_interval(tmp_path, capsys) -> None:
    a = _summary(tmp_path / "a", [50, 52, 49, 51, 50], [300, 301, 299, 300, 300])
    b = _summary(tmp_path / "b", [60, 61, 59, 62, 60], [298, 300, 299, 301, 300])
    code = main(["compare", str(a), str(b), "--max-p99-regression", "10%", "--max-rps-regression", "5%",
                 "--out", str(tmp_path / "out"), "--json"])
    assert code == 1
    changes = {(c["traffic"], c["metric"]): c for c in json.loads(capsys.readouterr().out)["changes"]}
    p99 = changes["embed", "p99_ms"]
    assert p99["crossed"] and p99["change"] == pytest.approx(60.4 / 50.4 - 1)
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
    assert "PASS" in out and "single measurement" in out and "+4.0%" in out and "-3.3%" in out


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
    assert "no summary.json" in err and len(err.splitlines()) == 1
