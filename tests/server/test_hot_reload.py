"""Model updates in explicit model-control mode, under concurrent load, lose no request."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.server import ModelControl

pytestmark = pytest.mark.triton


def _version(repo: Path, version: int, add: int) -> None:
    repos.write_add_one(repo, version=version)
    model = repo / "add_one" / str(version) / "model.py"
    model.write_text(model.read_text().replace("np.float32(1)", f"np.float32({add})"))


class Load:
    """Bounded background traffic recording what each response added (or the error)."""

    def __init__(self, url: str, threads: int = 4, max_seconds: float = 60) -> None:
        self.url, self.results, self.stop = url, Counter[str](), threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        x = np.zeros((1, 4), np.float32)
        inp = grpcclient.InferInput("INPUT", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        with grpcclient.InferenceServerClient(self.url) as c:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                try:
                    added = int(c.infer("add_one", [inp]).as_numpy("OUTPUT")[0, 0])
                    self.results[f"+{added}"] += 1
                except InferenceServerException as exc:
                    self.results[f"error: {exc.message()}"] += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self.stop.set()
        for t in self.threads:
            t.join()


def test_load_rollback_and_broken_version_under_load(tmp_path: Path) -> None:
    _version(tmp_path, 1, add=1)
    server = start_server(tmp_path, model_control=ModelControl.EXPLICIT, load_models=("add_one",))
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as admin:
            with Load(server.grpc_url) as load:
                _version(tmp_path, 2, add=10)
                admin.load_model("add_one")  # latest policy: v2 replaces v1 once ready
            assert set(load.results) == {"+1", "+10"}, load.results

            with Load(server.grpc_url) as load:
                shutil.rmtree(tmp_path / "add_one" / "2")  # roll back to v1
                admin.load_model("add_one")
            assert set(load.results) == {"+10", "+1"}, load.results

            with Load(server.grpc_url) as load:
                broken = tmp_path / "add_one" / "3"
                broken.mkdir()
                (broken / "model.py").write_text("raise RuntimeError('bad weights in v3')\n")
                with pytest.raises(InferenceServerException, match="bad weights in v3"):
                    admin.load_model("add_one")
            assert set(load.results) == {"+1"}, load.results  # v1 kept serving throughout
            assert admin.is_model_ready("add_one", "1")
    finally:
        server.close()
