"""``python -m tritonstack.server profile`` on a small real repository: a Python model, a second one that no
ensemble uses, and an ensemble over the first. What it measures is checked for shape and sense
(which models are entry points, load order, memory per stub), not for speed: the figures
themselves are the README's, with the command and the CPU."""

from __future__ import annotations

import json

import pytest

from tests.helpers import repos
from tritonstack.server.cli import main
from tritonstack.server.profile import profile_repository

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("profiled")
    repos.write_add_one(repo)
    repos.write_add_one(repo, name="standalone")
    repos.write_add_two_ensemble(repo)
    return repo


def test_profile_loads_models_before_ensembles_and_probes_each_entry_point(repo) -> None:
    result = profile_repository(repo, requests=3, burst_s=0.5, progress=lambda _line: None)
    names = [m.name for m in result.models]
    assert names.index("add_one") < names.index("add_two")  # steps before the ensemble over them
    by_name = {m.name: m for m in result.models}
    assert by_name["add_two"].kind == "ensemble" and by_name["add_one"].kind == "python"
    assert {m.name for m in result.models if m.entry_point} == {"add_two", "standalone"}
    assert by_name["add_one"].first_ms is None  # reached through the ensemble only
    for name in ("add_two", "standalone"):
        assert by_name[name].first_ms > 0 and by_name[name].steady_p50_ms > 0
    assert result.time_to_ready_s > 0 and all(m.load_s >= 0 for m in result.models)
    stubs = {label for label in result.memory_idle_mb if label != "tritonserver"}
    assert {"add_one_0_0", "standalone_0_0"} <= stubs and "tritonserver" in result.memory_idle_mb
    assert set(result.memory_load_mb) >= stubs


def test_profile_cli_writes_its_report_and_refuses_bad_input(repo, tmp_path, capsys) -> None:
    code = main(["profile", "--model-repository", str(repo), "--requests", "3", "--out", str(tmp_path)])
    assert code in (0, 1)  # 1 only when a first request took over 2x its steady median
    out = capsys.readouterr().out
    assert "ready with every model" in out and "| add_two | ensemble |" in out
    (folder,) = tmp_path.glob("cold-start-*")
    data = json.loads((folder / "profile.json").read_text())
    assert {m["name"] for m in data["models"]} == {"add_one", "standalone", "add_two"}
    assert main(["profile", "--model-repository", str(tmp_path / "none")]) == 2
    assert main(["profile", "--model-repository", str(repo), "--requests", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and "--requests" in err[1]
