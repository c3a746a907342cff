"""Campaigns sized by the machine (issue #33, item 7): rates relative to the capacity, where the capacity
comes from, and the bundled spike and soak files. Pure, but for one short run against a real Triton."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.loadtest import summaries
from tritonstack.loadtest.campaign import sizing
from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.campaign.slo import TOTAL, Slo, evaluate
from tritonstack.loadtest.cli import main
from tritonstack.loadtest.errors import CampaignError
from tritonstack.loadtest.report.summary import FindMaxResult

FIXTURES = Path(__file__).parent / "fixtures"
ADD_ONE = {"model": "add_one", "inputs": {"INPUT": {"datatype": "FP32", "shape": [1, 4], "value": 2.0}}}


def _relative(**extra: object) -> campaigns.Campaign:
    data = {"traffic": [ADD_ONE], "slo": ["p99_ms < 100", "max(rps) >= 2.4x capacity"],
            "stages": [{"name": "base", "duration_s": 5, "users": 8, "rps": "0.5x capacity"},
                       {"name": "spike", "duration_s": 5, "users": 8, "rps": "3x capacity"}], **extra}
    return campaigns.parse(data, "rel")


def test_bundled_campaigns_hold_no_machine_specific_rate() -> None:
    for name in ("spike", "soak"):
        c = campaigns.load(name)
        assert c.sized_by_capacity and not c.resolved
        assert all(s.rps is None and s.capacity_factor for s in c.stages), name
    spike = campaigns.load("spike")
    assert [s.capacity_factor for s in spike.stages] == [0.5, 3.0, 3.0, 0.5]
    assert "shed_rate" not in " ".join(str(s) for s in spike.slos)  # a faster server that keeps up passes
    soak = campaigns.load("soak")
    assert {s.capacity_factor for s in soak.stages} == {0.7}
    for path in campaigns.CAMPAIGNS_DIR.glob("*.toml"):  # and `validate` accepts every bundled file
        assert main(["validate", str(path)]) == 0


def test_resolve_turns_multiples_into_requests_per_second() -> None:
    c = sizing.resolve(_relative(), 1000.0)
    assert c.resolved and [s.rps for s in c.stages] == [500.0, 3000.0]
    assert [str(s) for s in c.slos] == ["p99_ms < 100", "max(rps) >= 2400"]
    plain = campaigns.load("smoke")
    assert sizing.resolve(plain, 1000.0) is plain  # nothing relative: unchanged
    with pytest.raises(CampaignError, match="over the limit"):
        sizing.resolve(_relative(), 90_000.0)


def test_the_spike_slos_pass_a_server_that_sheds_and_one_that_keeps_up() -> None:
    spike = sizing.resolve(campaigns.load("spike"), 400.0)  # offered 200 / 1200 rps

    def windows(spike_rps: float, shed: float, p99: float, shed_p99: float = 5.0) -> list[dict]:
        def row(rps: float, n_shed: float) -> dict:
            return {"requests": rps * 10, "rps": rps, "p99_ms": p99, "hard_error_rate": 0.0, "shed": n_shed,
                    "shed_p99_ms": shed_p99 if n_shed else 0.0}
        rows = [row(200, 0), row(spike_rps / 2, 0), row(spike_rps, shed), row(200, 0)]
        return [{"name": f"w{i}", "stats": {TOTAL: r}} for i, r in enumerate(rows)]

    def passed(ws: list[dict]) -> list[bool]:
        union = {TOTAL: {**ws[2]["stats"][TOTAL], "shed_p99_ms": max(w["stats"][TOTAL]["shed_p99_ms"] for w in ws)}}
        return [v.passed for v in evaluate(list(spike.slos), union, ws)]

    assert all(passed(windows(1190, shed=7000, p99=60)))  # sheds 60 %, answers the rest in time
    assert all(passed(windows(1190, shed=0, p99=40)))  # a faster server keeps up: no shedding, still PASS
    assert passed(windows(1190, shed=7000, p99=60, shed_p99=900)) == [True, True, False, True]  # slow refusals
    assert passed(windows(700, shed=0, p99=40)) == [True, True, True, False]  # 3x never offered


@pytest.mark.parametrize(("rps", "message"), [
    ("3 times capacity", "must be requests/s or a multiple of the capacity"),
    ("0x capacity", "must be in (0, 20]"),
    ("25x capacity", "must be in (0, 20]"),
])
def test_bad_relative_rates_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], rps: str,
                                         message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'slo = ["p99_ms < 100"]\n[[traffic]]\npipeline = "embed"\n[[stages]]\nduration_s = 2\n'
                    f'users = 2\nrps = "{rps}"\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("CampaignError: ") and message in err and len(err.splitlines()) == 1


def test_relative_slos_need_relative_rates_and_a_known_metric() -> None:
    with pytest.raises(CampaignError, match="needs stage rates relative to it too"):
        campaigns.parse({"traffic": [ADD_ONE], "slo": ["rps >= 0.5x capacity"],
                         "stages": [{"duration_s": 2, "users": 2, "rps": 10}]}, "x")
    with pytest.raises(CampaignError, match="unknown metric"):
        _relative(slo=["rpz >= 2x capacity"])


def test_where_the_capacity_comes_from(tmp_path: Path) -> None:
    assert sizing.given(750.0) == sizing.Capacity(750.0, "--capacity 750")
    with pytest.raises(CampaignError, match="--capacity must be"):
        sizing.given(0)
    l4 = sizing.from_report(FIXTURES / "summary-l4.json")  # a find-max report: its highest passing rate
    assert l4.rps == 2000.0 and "find-max 'find-max-embed'" in l4.source and "NVIDIA L4" in l4.source
    with pytest.raises(CampaignError, match="is not a find-max run"):
        sizing.from_report(FIXTURES / "summary-cpu.json")
    fm = summaries.make(stats={"Aggregated": summaries.row(900.0, 50.0)},
                        find_max=FindMaxResult(880.0, 900.0, 61.0, 64))
    assert sizing.from_report(summaries.save(tmp_path / "fm", fm)).rps == 880.0


def test_the_probe_is_the_same_traffic_and_bounded() -> None:
    c = _relative(capacity={"users": 16, "step_s": 4, "warmup_s": 1, "bisect_rounds": 1, "p99_ms": 50})
    ceiling = sizing.ceiling_probe(c)
    (stage,) = ceiling.stages
    assert ceiling.traffic == c.traffic and stage.rps is None and stage.users == 16  # closed loop
    search = sizing.find_max_probe(c, 1000.0)
    assert search.traffic == c.traffic and search.find_max is not None
    fm = search.find_max
    assert (fm.start_rps, fm.step_rps, fm.max_rps, fm.users, fm.bisect_rounds) == (500.0, 250.0, 1250.0, 16, 1)
    assert [str(s) for s in search.slos] == ["p99_ms < 50", "error_rate <= 0"]  # a step that sheds fails
    assert ceiling.duration_s + search.duration_s <= c.capacity_probe.max_s + 1  # 4+1 s, then <= 5 steps of 4 s
    with pytest.raises(CampaignError, match="completed no request"):
        sizing.find_max_probe(c, 0.0)


@pytest.mark.parametrize(("argv", "message"), [
    (["--capacity", "100", "--capacity-from", "x"], "not both"),
    (["--capacity", "-3"], "--capacity must be"),
])
def test_capacity_options_are_checked_before_any_load(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      argv: list[str], message: str) -> None:
    assert main(["run", "spike", "--url", "127.0.0.1:1", "--out", str(tmp_path / "r"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert main(["run", "smoke", "--url", "127.0.0.1:1", "--capacity", "100"]) == 2  # nothing to size
    assert "has no rate relative to the capacity" in capsys.readouterr().err
    assert main(["worker", "spike"]) == 2  # a worker must be told the master's capacity
    assert "give the worker the master's --capacity" in capsys.readouterr().err


@pytest.mark.triton
def test_a_relative_campaign_measures_the_capacity_then_runs(tiny_server, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Against a real Triton (add_one): no --capacity, so a short bounded probe measures it first and
    says so; the run's rates are its multiples; the probe's find-max report sizes the next run."""
    path = tmp_path / "rel.toml"
    path.write_text("""name = "rel"
slo = ["error_rate <= 0", "rps >= 0.2x capacity"]
[capacity]
users = 4
step_s = 2
warmup_s = 0.5
bisect_rounds = 1
p99_ms = 2000
[[traffic]]
model = "add_one"
[traffic.inputs.INPUT]
datatype = "FP32"
shape = [1, 4]
[[stages]]
duration_s = 2
users = 4
rps = "0.3x capacity"
""")
    out = tmp_path / "first"
    code = main(["run", str(path), "--url", tiny_server.grpc_url, "--metrics-url", tiny_server.metrics_url,
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert "measuring capacity first" in printed and "capacity: " in printed, printed
    summary = json.loads((out / "summary.json").read_text())
    capacity = summary["capacity"]
    assert capacity["rps"] > 0 and capacity["source"].startswith(f"measured on {tiny_server.grpc_url}: find-max")
    (window,) = summary["windows"]
    assert window["target_rps"] == pytest.approx(0.3 * capacity["rps"], abs=0.1)
    (rate_slo,) = [Slo.parse(v["slo"]) for v in summary["verdicts"] if v["slo"].startswith("rps >=")]
    assert rate_slo.threshold == pytest.approx(0.2 * capacity["rps"], abs=0.06)  # "0.2x capacity", resolved
    assert code == (0 if summary["passed"] else 1)
    probe = json.loads((out / "capacity" / "find-max" / "summary.json").read_text())
    assert probe["find_max"]["max_rps"] == pytest.approx(capacity["rps"], abs=0.05)
    # the next run reuses the probe's report: no probe, the same capacity
    again = tmp_path / "second"
    main(["run", str(path), "--url", tiny_server.grpc_url, "--metrics-url", "", "--out", str(again),
          "--capacity-from", str(out / "capacity" / "find-max")])
    printed = capsys.readouterr().out
    assert "measuring capacity first" not in printed and not (again / "capacity").exists()
    reused = json.loads((again / "summary.json").read_text())["capacity"]
    assert reused["rps"] == pytest.approx(capacity["rps"], abs=0.05) and reused["source"].startswith("--capacity-from")
