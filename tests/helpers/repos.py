"""Tiny model repositories written by tests: Python-backend models and ensembles.

Kept to plain text so each test states exactly what Triton is asked to load.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

ADD_ONE_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Adds 1 to INPUT; batches every request of a dynamic batch into one numpy call."""

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        out = np.concatenate(arrays) + np.float32(1)
        {delay}
        responses, start = [], 0
        for n in sizes:
            tensor = pb_utils.Tensor("OUTPUT", out[start:start + n])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += n
        return responses
'''


def add_one_config(name: str, *, max_batch_size: int = 8, queue_delay_us: int = 2000,
                   instances: int = 1, queue_policy: str = "", extra: str = "") -> str:
    """``queue_policy``: the body of ``default_queue_policy``, e.g. ``"max_queue_size: 2"``."""
    policy = f" default_queue_policy {{ {queue_policy} }}" if queue_policy else ""
    return textwrap.dedent(f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: {max_batch_size}
        input [{{ name: "INPUT", data_type: TYPE_FP32, dims: [4] }}]
        output [{{ name: "OUTPUT", data_type: TYPE_FP32, dims: [4] }}]
        dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us}{policy} }}
        instance_group [{{ kind: KIND_CPU, count: {instances} }}]
        """) + extra


def write_python_model(repo: Path, name: str, model_py: str, config: str, version: int = 1) -> Path:
    """``REPO/name/config.pbtxt`` (dedented) and ``REPO/name/<version>/model.py``."""
    folder = repo / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    (folder / str(version) / "model.py").write_text(model_py)
    (folder / "config.pbtxt").write_text(textwrap.dedent(config))
    return folder


def write_add_one(repo: Path, name: str = "add_one", *, version: int = 1, delay_s: float = 0.0,
                  **config: object) -> Path:
    """An FP32 [4] -> [4] model that adds one; ``delay_s`` makes each execute sleep."""
    delay = f"import time; time.sleep({delay_s})" if delay_s else "pass"
    return write_python_model(repo, name, ADD_ONE_MODEL.replace("{delay}", delay),
                              add_one_config(name, **config), version)  # type: ignore[arg-type]


def write_add_two_ensemble(repo: Path, name: str = "add_two", step: str = "add_one") -> Path:
    """A 2-step ensemble: INPUT -> step -> step -> OUTPUT (adds 2)."""
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(textwrap.dedent(f"""\
        name: "{name}"
        platform: "ensemble"
        max_batch_size: 8
        input [{{ name: "INPUT", data_type: TYPE_FP32, dims: [4] }}]
        output [{{ name: "OUTPUT", data_type: TYPE_FP32, dims: [4] }}]
        ensemble_scheduling {{
          step [
            {{ model_name: "{step}", model_version: -1,
               input_map {{ key: "INPUT", value: "INPUT" }},
               output_map {{ key: "OUTPUT", value: "mid" }} }},
            {{ model_name: "{step}", model_version: -1,
               input_map {{ key: "INPUT", value: "mid" }},
               output_map {{ key: "OUTPUT", value: "OUTPUT" }} }}
          ]
        }}
        """))
    return folder


def write_broken(repo: Path, name: str = "broken", message: str = "boom on import") -> Path:
    """A model whose model.py raises at import, so Triton fails to load it."""
    folder = write_add_one(repo, name)
    (folder / "1" / "model.py").write_text(f"raise RuntimeError({message!r})\n")
    return folder
