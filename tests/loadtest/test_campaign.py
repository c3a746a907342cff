"""Campaign files: parsing, validation messages, bundled campaigns (no Triton)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.cli import main
from tritonstack.loadtest.errors import CampaignError

ADD_ONE = {"model": "add_one", "inputs": {"INPUT": {"datatype": "FP32", "shape": [1, 4]}}}


def _parse(**data: object) -> Campaign:
    base: dict[str, object] = {"traffic": [ADD_ONE], "stages": [{"duration_s": 2, "users": 1}]}
    base.update(data)
    return campaigns.parse(base, "test")


def test_minimal_campaign_has_defaults() -> None:
    c = _parse()
    assert c.name == "test" and c.duration_s == 2
    assert c.traffic[0].stats_name == "add_one" and c.traffic[0].inputs[0].shape == (1, 4)
    assert c.target.grpc == "127.0.0.1:8001"


def test_steps_expand_to_measured_constant_rate_stages() -> None:
    c = _parse(stages=[], steps={"users": 4, "start_rps": 10, "stop_rps": 30, "step_rps": 10,
                                 "duration_s": 3, "warmup_s": 1})
    assert [s.rps for s in c.stages] == [10, 20, 30]
    assert all(s.measure and s.warmup_s == 1 for s in c.stages)
    assert c.is_step and c.duration_s == 9


def test_round_trip_through_the_plan_json() -> None:
    c = _parse(slo=["p99_ms < 50", "add_one: rps >= 1"], find_max={
        "users": 4, "start_rps": 10, "step_rps": 10, "max_rps": 30}, stages=[])
    assert Campaign.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(("data", "message"), [
    ({"stages": [{"duration_s": 2, "userz": 1}]}, "did you mean 'users'"),
    ({"stages": [{"duration_s": 2}]}, "stages[0] needs `users`"),
    ({"stages": [{"duration_s": 2, "users": 0}]}, "stages[0].users must be >= 1"),
    ({"stages": [{"duration_s": 2, "users": 1, "warmup_s": 2}]}, "must be shorter than duration_s"),
    ({"stages": [{"duration_s": 2, "users": 1, "window_s": 5}]}, "window_s (5) must be between 1 and"),
    ({"stages": []}, "needs exactly one of [[stages]], [steps], [concurrency] or [find_max]"),
    ({"traffic": []}, "has no [[traffic]]"),
    ({"traffic": [{"model": "x"}]}, "needs [inputs]"),
    ({"traffic": [{"pipeline": "classify"}]}, "pipeline must be one of classify_digit, embed"),
    ({"traffic": [{**ADD_ONE, "inputs": {"INPUT": {"datatype": "FP33", "shape": [1]}}}]}, "datatype must be"),
    ({"slo": ["p99 < 100"]}, "did you mean 'p99_ms'"),
    ({"slo": ["p99_ms << 100"]}, "is not 'METRIC OP NUMBER'"),
    ({"slo": ["embed: p99_ms < 100"]}, "names 'embed', which is not in the traffic"),
    ({"slo": "p99_ms < 100"}, "must be a list of strings"),
    ({"stages": [], "find_max": {"users": 1, "start_rps": 1, "step_rps": 1, "max_rps": 2}},
     "[find_max] needs a p99 SLO"),
    ({"steps": {"users": 1}}, "use either [[stages]] or [steps]"),
    ({"duration": 3}, "unknown key 'duration'"),
    ({"stages": [{"duration_s": 2, "users": 1, "rps": float("inf")}]}, "rps must be a finite number"),
    ({"stages": [{"duration_s": 2, "users": 1, "rps": float("nan")}]}, "rps must be a finite number"),
    ({"stages": [{"duration_s": 2, "users": 10_000_000, "rps": 1e12}]}, "users must be <= 10000"),
    ({"stages": [{"duration_s": 2, "users": 10, "rps": 1e12}]}, "rps must be <= 100000"),
    ({"traffic": [{"pipeline": "embed", "pool": 100_000_000, "batch": 100_000}]}, "batch must be <= 4096"),
    ({"traffic": [{"pipeline": "embed", "pool": 100_000, "batch": 4096}]}, "rows held in memory"),
    ({"target": {"metrics": "file:///etc/passwd"}}, "give Triton's metrics endpoint as http(s)://"),
])
def test_invalid_campaigns_say_what_to_fix(data: dict[str, object], message: str) -> None:
    with pytest.raises(CampaignError) as err:
        _parse(**data)
    assert message in str(err.value)


def test_bundled_campaigns_are_valid() -> None:
    names = {p.stem for p in campaigns.CAMPAIGNS_DIR.glob("*.toml")}
    assert {"smoke", "headline", "embed-find-max", "mixed", "spike", "soak"} <= names
    for name in names:
        c = campaigns.load(name)
        assert c.slos, f"{name} has no SLO"
        assert c.duration_s <= 15 * 60, f"{name} is not bounded"
    assert campaigns.load("smoke").duration_s <= 20


def test_unknown_campaign_name_suggests_a_bundled_one() -> None:
    with pytest.raises(CampaignError, match="did you mean 'smoke'"):
        campaigns.load("smok")


def test_cli_validate_reports_a_bad_file_in_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('slo = ["p99_ms < 100"]\n[[traffic]]\npipeline = "embed"\n[[stages]]\nduration_s = 1\n')
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("CampaignError: ") and "stages[0] needs `users`" in err and "\n" not in err
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [")
    assert main(["validate", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_yaml_campaigns_load(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("slo: ['p99_ms < 100']\ntraffic:\n  - pipeline: classify_digit\n"
                    "stages:\n  - {duration_s: 2, users: 3, rps: 10}\n")
    c = campaigns.load(path)
    assert c.name == "c" and c.stages[0].rps == 10 and c.traffic[0].model == "classify_digit"


def test_cost_command_is_dispatched_or_explained(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import tritonstack.loadtest.cost.cloud  # noqa: F401
    except ModuleNotFoundError:
        assert main(["cost", "--help"]) == 2
        assert "loadtest/cost.py is missing" in capsys.readouterr().err
    else:
        with pytest.raises(SystemExit) as exit_:
            main(["cost", "--help"])
        assert exit_.value.code == 0
