"""The CLI: exit codes and one-line errors for each kind of bad input, help text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritonstack.converters.cli import main

ROOT = Path(__file__).parents[2]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_option():
    proc = subprocess.run([sys.executable, "-m", "tritonstack.converters", "export", "--help"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0
    for option in ("--task", "--precision", "--int8-mode", "--calibration", "--max-batch-size", "--instances",
                   "--model-repository", "--model-version", "--target", "--opset", "--admit-rows", "--admit-ms",
                   "--max-queue-delay-us",
                   "--min-mean-cosine",
                   "--min-recall-at-10", "--max-accuracy-drop", "--verbose", "exit codes"):
        assert option in proc.stdout


@pytest.mark.parametrize(("source", "message"), [
    ("minlm", "UnknownSource: unknown source 'minlm'; did you mean 'minilm'?"),
    ("no/such/folder", "UnknownSource: unknown source 'no/such/folder'"),
    ("tests.converters.tiny:classifer_factory", "did you mean tests.converters.tiny:classifier_factory?"),
    ("no_such_pkg.mod:factory", "UnknownSource: cannot import module 'no_such_pkg.mod'"),
])
def test_unknown_sources_exit_2_with_one_line(capsys, tmp_path, source, message):
    code, _, err = run_cli(capsys, "export", source, "--name", "m", "--model-repository", str(tmp_path))
    assert code == 2
    assert message in err and err.startswith("UnknownSource: ")
    assert "Traceback" not in err and err.count("\n") == 1


def test_missing_weights_and_unsupported_architecture_exit_2(capsys, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    code, _, err = run_cli(capsys, "export", str(folder), "--name", "m", "--model-repository", str(tmp_path / "r"))
    assert code == 2 and err.startswith("MissingWeights:") and "save_pretrained" in err
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"model_type": "mystery-net", "hidden_size": 8}))
    code, _, err = run_cli(capsys, "export", str(folder), "--name", "m", "--model-repository", str(tmp_path / "r"))
    assert code == 2 and err.startswith("UnsupportedModel:") and "mystery-net" in err


def test_int8_without_evaluation_data_is_refused_before_work(capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", "tests.converters.tiny:embedder_factory", "--name", "m",
                           "--precision", "int8", "--model-repository", str(tmp_path))
    assert code == 2 and err.startswith("InvalidSpec:") and "evaluation_data" in err


def test_bad_option_values_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", "minilm", "--name", "m", "--max-batch-size", "0",
                           "--model-repository", str(tmp_path))
    assert code == 2 and err.startswith("InvalidSpec: --max-batch-size")
    code, _, err = run_cli(capsys, "export", "minilm", "--name", "m", "--queue-timeout-ms", "-5",
                           "--model-repository", str(tmp_path))
    assert code == 2 and err.startswith("InvalidSpec: --queue-timeout-ms")
    code, _, err = run_cli(capsys, "export", "minilm", "--name", "m", "--admit-rows", "99",
                           "--model-repository", str(tmp_path))
    assert code == 2 and err.startswith("InvalidSpec: --admit-rows must be 0..--max-batch-size (32")
    code, _, err = run_cli(capsys, "export", "minilm", "--name", "m", "--admit-ms", "1e9",
                           "--model-repository", str(tmp_path))
    assert code == 2 and err.startswith("InvalidSpec: --admit-ms must be 0..60000 milliseconds")
    # issue #32, item 9: a version past int64 aborted tritonserver at start (std::stoll)
    code, _, err = run_cli(capsys, "export", "minilm", "--name", "m", "--model-version", "99999999999999999999",
                           "--model-repository", str(tmp_path))
    assert code == 2 and err.startswith("InvalidSpec: --model-version must be 1..9,223,372,036,854,775,807")


def test_a_repository_numbered_up_to_int64_refuses_the_next_version(tmp_path):
    """The next free version past the largest Triton reads is refused, with the remedy."""
    from tests.converters import tiny
    from tritonstack.converters import carry
    from tritonstack.converters.errors import InvalidSpec
    from tritonstack.converters.repository import write_version
    from tritonstack.converters.spec import MAX_VERSION
    from tritonstack.converters.triton_config import config_for_target, io_from_onnx

    onnx_path = tiny.export_embedder_onnx(tmp_path / "e.onnx")
    config = config_for_target("python-ort", "m", *io_from_onnx(onnx_path), max_batch_size=4)
    files = {"model.onnx": onnx_path, **carry.version_files("ort_runner")}
    write_version(tmp_path / "repo", config, files, {}, version=MAX_VERSION)
    with pytest.raises(InvalidSpec, match="outside 1..9,223,372,036,854,775,807"):
        write_version(tmp_path / "repo", config, files, {})
    with pytest.raises(SystemExit) as exc:
        main(["export", "minilm", "--name", "m", "--precision", "int4"])
    assert exc.value.code == 2


@pytest.mark.gpu
def test_tensorrt_target_builds_a_plan_with_reproducer(capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "tests.converters.tiny:classifier_factory", "--name", "trt",
                             "--precision", "fp16", "--target", "tensorrt", "--model-repository", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "trt" / "1" / "model.plan").exists()
    assert "trtexec" in (tmp_path / "trt" / "1" / "model.plan.trtexec.sh").read_text()


def test_tensorrt_without_gpu_exits_3(capsys, tmp_path):
    from tritonstack.converters.steps.onnx2trt import gpu_missing

    if gpu_missing() is None:
        pytest.skip("this machine has a GPU with TensorRT")
    code, _, err = run_cli(capsys, "export", "tests.converters.tiny:classifier_factory", "--name", "m",
                           "--target", "tensorrt", "--model-repository", str(tmp_path))
    assert code == 3 and err.startswith("GpuUnavailable:") and "--target python-ort" in err


def test_repository_not_writable_exits_3(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "export", "tests.converters.tiny:classifier_factory", "--name", "m",
                           "--model-repository", str(blocker / "repo"))
    assert code == 3 and err.startswith("RepositoryNotWritable:") and "--model-repository" in err


def test_parity_failure_exits_1_with_table_and_writes_nothing(capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "tests.converters.tiny:broken_factory", "--name", "b",
                             "--model-repository", str(tmp_path / "repo"), "--work-dir", str(tmp_path / "w"))
    assert code == 1
    assert err.startswith("ToleranceExceeded:") and "max_abs" in err and "logits" in err
    assert "parity                   failed" in out
    assert not (tmp_path / "repo" / "b").exists()


def test_export_succeeds_and_prints_steps(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", "tests.converters.tiny:classifier_factory", "--name", "c",
                           "--precision", "int8", "--model-repository", str(tmp_path / "repo"),
                           "--work-dir", str(tmp_path / "w"))
    assert code == 0
    for step in ("torch2onnx", "parity", "onnx2int8", "accuracy", "onnx2trt-int8"):
        assert f"  {step} " in out
    assert "wrote c version 1 (int8)" in out
    state = json.loads((tmp_path / "w" / "state.json").read_text())
    assert state["steps"]["accuracy"]["status"] == "ok"
