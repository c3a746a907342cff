"""Triton's local response cache on the demo pipelines (``response_cache`` in the ensembles'
config, ``--response-cache-mb`` on the launcher): a repeated request is answered from the cache,
byte for byte what the pipeline computes, and the hits and misses are on Triton's /metrics. On
the real demo repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_server
from tritonstack.client import Client
from tritonstack.loadtest.runner.metrics import scrape
from tritonstack.server import TritonServer

pytestmark = [pytest.mark.triton, pytest.mark.slow]
TEXTS = ["where is my parcel", "How do I reset my password?"]


@pytest.fixture(scope="module")
def cached(server: TritonServer, repository: Path) -> Iterator[TritonServer]:
    """A second Triton on the same repository, with a 16 MB cache (``server``, the package's
    shared one, runs without a cache)."""
    srv = start_server(repository, response_cache_bytes=16 * 2**20)
    yield srv
    srv.close()


def _cache_counts(srv: TritonServer, model: str) -> tuple[float, float]:
    row = (scrape(srv.metrics_url, timeout_s=5) or {}).get(model, {})
    return row.get("nv_cache_num_hits_per_model", 0.0), row.get("nv_cache_num_misses_per_model", 0.0)


def test_a_repeated_request_is_a_hit_and_byte_identical_to_the_uncached_answer(server, cached) -> None:
    images = np.zeros((2, 8, 8), np.float32)
    images[0, 3] = 16.0
    with Client(urls=[server.grpc_url]) as plain, Client(urls=[cached.grpc_url]) as client:
        uncached = plain.embed(TEXTS)
        hits, misses = _cache_counts(cached, "embed")
        first, second = client.embed(TEXTS), client.embed(TEXTS)
        assert _cache_counts(cached, "embed") == (hits + 1, misses + 1)
        assert first.tobytes() == second.tobytes() == uncached.tobytes()
        digits = [client.classify_digits(images) for _ in range(3)]
        reference = plain.classify_digits(images)
    for labels, probabilities in digits:
        assert labels.tobytes() == reference.labels.tobytes()
        assert probabilities.tobytes() == reference.probabilities.tobytes()
    assert _cache_counts(cached, "classify_digit")[0] >= 2


def test_a_different_input_is_a_miss_and_errors_are_not_cached(cached) -> None:
    with Client(urls=[cached.grpc_url], retries=0) as client:
        hits, misses = _cache_counts(cached, "embed")
        client.embed(["a sentence never sent before"])
        assert _cache_counts(cached, "embed") == (hits, misses + 1)
        for _ in range(2):
            with pytest.raises(Exception, match="empty"):
                client.embed([" "])
        assert _cache_counts(cached, "embed")[0] == hits  # a refusal is never served from the cache


def test_the_launcher_validates_the_cache_size(tmp_path) -> None:
    from tritonstack.server import ServerConfig
    from tritonstack.server.errors import ConfigError

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text("")
    with pytest.raises(ConfigError, match="response cache"):
        ServerConfig(model_repository=tmp_path, response_cache_bytes=-1)
