"""scripts/peer_sweep.py's pure logic: which level is a system's best, the ratio to the best peer,
the cosine, and the CPU of the server's process tree."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("peer_sweep", ROOT / "scripts" / "peer_sweep.py")
peer_sweep = importlib.util.module_from_spec(_spec)
sys.modules["peer_sweep"] = peer_sweep  # dataclasses look their module up there
_spec.loader.exec_module(peer_sweep)


def _level(concurrency: int, rps: float, p99: float, errors: int = 0, requests: int = 100) -> dict:
    return {"concurrency": concurrency, "rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "errors": errors,
            "requests": requests, "server_cpu_us": 1.0, "generator_cpu_us": 1.0}


def test_best_level_is_the_fastest_under_the_bound_without_errors() -> None:
    levels = [_level(1, 100, 5), _level(8, 400, 60), _level(16, 500, 99.9, errors=3),
              _level(32, 600, 100.0), _level(64, 700, 900)]
    best = peer_sweep.best_level(levels, 100.0)
    assert best is not None and best["concurrency"] == 8


def test_no_level_under_the_bound_gives_none() -> None:
    assert peer_sweep.best_level([_level(1, 50, 150), _level(2, 0, float("nan"), requests=0)], 100.0) is None


def test_ratio_is_against_the_fastest_measured_peer() -> None:
    results = [{"system": "project", "best": _level(32, 1000, 80)},
               {"system": "fastembed", "best": _level(8, 200, 50)},
               {"system": "litserve", "best": _level(16, 250, 90)},
               {"system": "infinity", "failed": "could not start"},
               {"system": "st-fastapi", "best": None}]
    ratio, top = peer_sweep.ratio_to_best_peer(results)
    assert top == "litserve" and ratio == pytest.approx(4.0)
    assert peer_sweep.ratio_to_best_peer(results[1:]) == (None, None)
    table = peer_sweep.render(results, 100.0)
    assert "| infinity | not measured: could not start |" in table and "**4.00×**" in table


def test_mean_cosine_ignores_scale_and_sees_direction() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert peer_sweep.mean_cosine(a, 3 * a) == pytest.approx(1.0)
    assert peer_sweep.mean_cosine(a, np.array([[0.0, 1.0], [0.0, 1.0]])) == pytest.approx(0.5)


def test_the_cpu_of_a_process_tree_is_read_with_the_campaigns_reader() -> None:
    """The sweep reads the server's tree with loadtest's reader (psutil), as the campaigns do."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in peer_sweep.cpu_by_process(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert peer_sweep.cpu_spent({10: 1.0, 11: 0.5}, {10: 1.5, 11: 0.5, 12: 0.25}) == pytest.approx(0.75)


def test_bad_levels_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        peer_sweep.main(["--model-repository", str(tmp_path), "--levels", "0,4", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        peer_sweep.main(["--model-repository", str(tmp_path), "--peers", "ollama", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
