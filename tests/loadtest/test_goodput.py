"""Concurrency sweeps: the [concurrency] section, SLO aggregates over levels, the per-level
goodput curve (saturating level, ratios) and its plot. No Triton; the real run is in
test_overload.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.loadtest import summaries
from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.campaign.slo import TOTAL, Slo, evaluate, limit
from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.cli import main
from tritonstack.loadtest.errors import CampaignError
from tritonstack.loadtest.report import goodput
from tritonstack.loadtest.report import html as html_report
from tritonstack.loadtest.runner import stats

EMBED = {"pipeline": "embed"}


def _sweep(**concurrency: object) -> Campaign:
    spec: dict[str, object] = {"levels": [4, 8, 16], "seconds_per_level": 10, "warmup_s": 2}
    spec.update(concurrency)
    return campaigns.parse({"traffic": [EMBED], "slo": ["max(p99_ms) < 100"], "concurrency": spec}, "sweep")


def _window(users: int, answered: int, shed: int = 0, failed: int = 0, ms: int = 20,
            seconds: float = 10.0, **extra: Any) -> dict[str, Any]:
    """A recorded level as the shape writes it: answers at ``ms``, other failures at 5 s, refusals at 1 ms."""
    counts = stats.with_total({
        "embed": stats.snapshot_entry(answered + failed, failed, answered * ms + failed * 5000.0,
                                      {ms: answered, **({5000: failed} if failed else {})}),
        stats.shed_name("embed"): stats.snapshot_entry(shed, shed, shed * 1.0, {1: shed} if shed else {}),
    })
    return {"name": f"{users} users", "users": users, "duration_s": seconds, "target_rps": None,
            "counts": counts, "stats": stats.summarize(counts, seconds), "server_cpu_pct": 150.0,
            "generator_cpu_pct": 30.0, **extra}


# --- the [concurrency] section -----------------------------------------------------------------

def test_levels_expand_to_measured_closed_loop_stages() -> None:
    c = _sweep()
    assert [(s.name, s.users, s.rps, s.duration_s, s.warmup_s, s.measure) for s in c.stages] == [
        ("4 users", 4, None, 10, 2, True), ("8 users", 8, None, 10, 2, True),
        ("16 users", 16, None, 10, 2, True)]
    assert c.duration_s == 30 and not c.is_step and c.concurrency is not None
    assert c.concurrency.saturation_tolerance == 0.05
    assert Campaign.from_dict(c.to_dict()) == c  # through plan.json into the Locust process


@pytest.mark.parametrize(("concurrency", "message"), [
    ({"levels": [4]}, "must list at least 2 user counts"),
    ({"levels": "4, 8"}, "must list at least 2 user counts"),
    ({"levels": [8, 4]}, "must increase strictly, got [8, 4]"),
    ({"levels": [4, 4]}, "must increase strictly"),
    ({"levels": [0, 4]}, "levels[0] must be >= 1"),
    ({"levels": [4, 8.5]}, "levels[1] must be a whole number"),
    ({"levels": [4, 20_000]}, "levels[1] must be <= 10000"),
    ({"levels": list(range(1, 30))}, "has 29 levels; keep it <= 20"),
    ({"warmup_s": 10}, "warmup_s (10) must be shorter than seconds_per_level (10)"),
    ({"saturation_tolerance": 0.9}, "saturation_tolerance must be <= 0.5"),
    ({"seconds_per_levl": 3}, "did you mean 'seconds_per_level'"),
])
def test_bad_concurrency_sections_say_what_to_fix(concurrency: dict[str, object], message: str) -> None:
    with pytest.raises(CampaignError) as err:
        _sweep(**concurrency)
    assert message in str(err.value)


def test_concurrency_excludes_the_other_plans() -> None:
    with pytest.raises(CampaignError, match=r"use either \[\[stages\]\] or \[concurrency\], not both"):
        campaigns.parse({"traffic": [EMBED], "stages": [{"duration_s": 1, "users": 1}],
                         "concurrency": {"levels": [1, 2], "seconds_per_level": 5}}, "x")
    with pytest.raises(CampaignError, match=r"exactly one of \[\[stages\]\], \[steps\], \[concurrency\]"):
        campaigns.parse({"traffic": [EMBED], "slo": ["p99_ms < 100"], "concurrency": {
            "levels": [1, 2], "seconds_per_level": 5}, "find_max": {
            "users": 1, "start_rps": 1, "step_rps": 1, "max_rps": 2}}, "x")


def test_a_bad_sweep_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('slo = ["max(p99_ms) < 100"]\n[[traffic]]\npipeline = "embed"\n'
                   "[concurrency]\nlevels = [16, 8]\nseconds_per_level = 5\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("CampaignError: ") and "[concurrency].levels must increase" in err
    assert "\n" not in err


def test_the_bundled_campaign_gates_the_issue() -> None:
    c = campaigns.load("embed-goodput")
    assert c.concurrency is not None and c.concurrency.levels == (4, 8, 16, 32, 64)
    assert [s.rps for s in c.stages] == [None] * 5 and c.traffic[0].pipeline == "embed"
    assert {str(s) for s in c.slos} == {"last(goodput_rps) / max(goodput_rps) >= 0.9", "max(p99_ms) < 100",
                                        "max(hard_error_rate) <= 0"}


# --- SLO aggregates over the levels --------------------------------------------------------------

def test_aggregate_and_ratio_slos_parse_and_print_back() -> None:
    slo = Slo.parse("embed: last(goodput_rps) / max( goodput_rps ) >= 0.9")
    assert (slo.scope, slo.agg, slo.metric, str(slo.divisor), slo.op, slo.threshold) == (
        "embed", "last", "goodput_rps", "max(goodput_rps)", ">=", 0.9)
    assert str(slo) == "embed: last(goodput_rps) / max(goodput_rps) >= 0.9"
    assert Slo.parse(str(slo)) == slo and Slo.parse("p99_ms < 100") == Slo("p99_ms", "<", 100.0)


@pytest.mark.parametrize(("text", "message"), [
    ("maxx(p99_ms) < 100", "unknown aggregate 'maxx'; did you mean 'max'?"),
    ("max(p99) < 100", "unknown metric 'p99'; did you mean 'p99_ms'?"),
    ("max(p99_ms < 100", "is not METRIC or AGGREGATE(METRIC)"),
    ("a / b / c < 1", "is not 'METRIC OP NUMBER'"),
])
def test_bad_aggregates_say_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(CampaignError) as err:
        Slo.parse(text)
    assert message in str(err.value)


def test_aggregates_judge_each_level_where_the_union_would_hide_one() -> None:
    windows = [_window(4, 5000, ms=10), _window(16, 6000, shed=3000, ms=40), _window(64, 4000, shed=20000,
                                                                                    ms=150)]
    union = stats.summarize(stats.merge([w["counts"] for w in windows]), 30.0)
    plain, worst, ratio = evaluate([Slo.parse("p99_ms < 200"), Slo.parse("max(p99_ms) < 100"),
                                    Slo.parse("last(goodput_rps) / max(goodput_rps) >= 0.9")], union, windows)
    assert plain.passed
    assert not worst.passed and worst.value == 150 and worst.at == "64 users"
    assert worst.describe() == "FAIL max(p99_ms) < 100: measured 150 at 64 users (50 over)"
    assert ratio.value == pytest.approx(4000 / 6000) and not ratio.passed
    assert ratio.at == "64 users / 16 users"
    same = evaluate([Slo.parse("max(hard_error_rate) <= 0")], union, windows)[0]
    assert same.passed and same.at is None  # every level alike: none is named


def test_a_level_without_requests_or_a_zero_peak_fails_with_the_reason() -> None:
    empty = _window(8, 0)
    verdict = evaluate([Slo.parse("max(p99_ms) < 100")], {TOTAL: {"requests": 1.0}},
                       [_window(4, 10), empty])[0]
    assert not verdict.passed and "window '8 users' measured no requests for the run" in verdict.describe()
    refused = _window(4, 0, shed=10)
    zero = evaluate([Slo.parse("last(goodput_rps) / max(goodput_rps) >= 0.9")], {}, [refused])[0]
    assert not zero.passed and zero.describe().endswith("max(goodput_rps) is 0")
    assert "no windows were measured" in evaluate([Slo.parse("max(p99_ms) < 1")], {}, [])[0].describe()


def test_find_max_and_the_plot_read_plain_and_max_bounds_only() -> None:
    slos = [Slo.parse("max(p99_ms) < 80"), Slo.parse("p99_ms < 100"), Slo.parse("min(p99_ms) < 10"),
            Slo.parse("last(p99_ms) / first(p99_ms) < 2")]
    assert limit(slos, "p99_ms") == 80 and limit(slos[2:], "p99_ms") is None


# --- the goodput curve ---------------------------------------------------------------------------

def test_goodput_counts_answers_only() -> None:
    row = _window(4, answered=900, shed=300, failed=100)["stats"][TOTAL]
    assert (row["rps"], row["accepted_rps"], row["goodput_rps"]) == (130.0, 100.0, 90.0)


def test_a_level_records_offered_goodput_refusals_errors_and_accepted_latency() -> None:
    level = goodput.Level.from_window(_window(16, answered=900, shed=300, failed=100, ms=40))
    assert (level.users, level.offered_rps, level.goodput_rps, level.refused_rps) == (16, 130.0, 90.0, 30.0)
    assert (level.other_errors, level.other_error_rps) == (100, 10.0)
    assert level.p50_ms == 40 and level.p99_ms == 5000  # other failures are timed with the answers
    assert (level.server_cpu_pct, level.generator_cpu_pct) == (150.0, 30.0)


def _curve(goodputs: dict[int, int], tolerance: float = 0.05) -> goodput.Curve:
    levels = [goodput.Level.from_window(_window(users, answered=g * 10)) for users, g in goodputs.items()]
    return goodput.Curve(tuple(levels), tolerance)


def test_the_saturating_level_is_the_lowest_within_the_tolerance_of_the_peak() -> None:
    c = _curve({4: 500, 8: 660, 16: 680, 32: 580, 64: 570})
    assert c.peak.users == 16 and c.saturating.users == 8  # 660 >= 0.95 * 680
    assert [c.multiple(level) for level in c.levels] == [0.5, 1, 2, 4, 8]
    assert c.ratio(c.highest) == pytest.approx(570 / 680)
    assert c.at_multiple(4) is c.levels[3] and c.at_multiple(3) is None
    strict = _curve({4: 500, 8: 660, 16: 680, 32: 580, 64: 570}, tolerance=0.01)
    assert strict.saturating.users == 16 and strict.multiple(strict.highest) == 4
    tie = _curve({4: 100, 8: 200, 16: 200})
    assert tie.peak.users == 8 and tie.saturating.users == 8
    d = c.to_dict()
    assert (d["saturating_users"], d["peak_users"], d["highest_users"]) == (8, 16, 64)
    assert d["highest_multiple"] == 8
    assert d["levels"][2]["ratio"] == 1.0 and d["levels"][0]["multiple"] == 0.5


def test_nothing_answered_has_no_ratio() -> None:
    c = _curve({4: 0, 8: 0})
    assert c.saturating.users == 4 and c.ratio(c.highest) is None
    assert "goodput – of the peak" in goodput.headline(c)


def test_the_curve_comes_from_a_sweeps_windows_in_order_of_users() -> None:
    c = goodput.curve(_sweep(), [_window(16, 100), _window(4, 50), _window(8, 90)])
    assert c is not None and [level.users for level in c.levels] == [4, 8, 16]
    assert goodput.curve(_sweep(), []) is None
    staged = campaigns.parse({"traffic": [EMBED], "stages": [{"duration_s": 2, "users": 1}]}, "s")
    assert goodput.curve(staged, [_window(1, 10)]) is None


def test_the_report_section_and_plot(tmp_path: Path) -> None:
    campaign = _sweep(levels=[4, 8, 16, 32, 64])
    c = goodput.curve(campaign, [_window(u, g * 10, shed=s * 10, ms=ms) for u, g, s, ms in (
        (4, 500, 0, 8), (8, 660, 0, 12), (16, 680, 500, 20), (32, 580, 1300, 40), (64, 570, 1900, 60))])
    assert c is not None
    text = "\n".join(goodput.markdown(c))
    assert "saturating level 8 users" in text and "At 4x (32 users): goodput 85.3 % of the peak" in text
    assert "| 64 | 8 | 2,470 | 570 | 83.8 % | 1,900 | 0 | 60 | 60 | 150 | 30 |" in text
    assert f"![goodput and accepted p99 against concurrency]({goodput.PLOT_FILE})" in text
    png = tmp_path / goodput.PLOT_FILE
    goodput.plot(c, png, campaign.name, goodput.p99_line(campaign))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = summaries.make(stats={"Aggregated": summaries.row(100.0, 10.0)},
                             windows=[_window(4, 5000), _window(8, 6000)])
    page = "\n".join(html_report._goodput_section(campaign, summary, tmp_path))
    assert "<h2>Goodput against concurrency</h2>" in page and "<th>goodput /s</th>" in page
    assert "src='data:image/png;base64,iVBOR" in page  # the PNG, embedded
