"""Golden data: written by every export, re-checked by ``converters verify`` and at load by the
python-ort runner in a real Triton (a version that fails its check is refused, the old one serves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.converters import tiny
from tritonstack.converters.api import ExportSpec, export
from tritonstack.converters.cli import main
from tritonstack.converters.spec import Thresholds

LOOSE = Thresholds(min_mean_cosine=0.9, min_recall_at_10=0.5)  # a random tiny BERT, not MiniLM


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    bert = tiny.write_tiny_bert(root / "bert")
    export(ExportSpec(str(bert), "bert", precisions=("int8", "fp32"), repository=root / "repo",
                      work_dir=root / "work", evaluation_size=100, thresholds=LOOSE), progress=None)
    export(ExportSpec("tests.converters.tiny:classifier_factory", "cls", precisions=("int8",),
                      int8_mode="static", repository=root / "repo", work_dir=root / "work2"), progress=None)
    return root / "repo"


def _copy_version(model_dir: Path, source: int, target: int) -> Path:
    dest = model_dir / str(target)
    shutil.copytree(model_dir / str(source), dest)
    return dest


def _corrupt_golden(folder: Path) -> None:
    """Make the recorded build outputs disagree with what the model computes."""
    path = folder / "golden.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    key = next(k for k in arrays if k.startswith("built:"))
    arrays[key] = np.roll(arrays[key], 1, axis=-1)
    np.savez(path, **arrays)


def test_every_version_carries_golden_data_and_the_build_cpu(repo):
    meta = json.loads((repo / "bert" / "1" / "metadata.json").read_text())
    assert (repo / "bert" / "1" / "golden.npz").is_file()
    golden = meta["golden"]
    assert golden["rows"] == 32 and golden["output"] == "embedding"
    assert golden["bounds"] == {"min_min_cosine_to_build": 0.999, "min_mean_cosine_to_fp32": 0.9,
                                "min_min_cosine_to_fp32": 0.9}
    assert golden["build"]["min_cosine_to_build"] > 0.9999
    assert meta["build_cpu"]["int8_kernel"] in ("exact", "int16-saturating")
    assert meta["build_cpu"]["model"]
    assert meta["portability"]["integer_products"] > 0
    fp32 = json.loads((repo / "bert_fp32" / "1" / "metadata.json").read_text())
    assert fp32["golden"]["bounds"] == {"min_min_cosine_to_build": 0.999} and fp32["portability"] is None
    cls = json.loads((repo / "cls" / "1" / "metadata.json").read_text())
    assert cls["golden"]["kind"] == "classification"
    assert "max_label_changes_vs_fp32" in cls["golden"]["bounds"]


def test_verify_passes_here_and_names_what_fails(repo, tmp_path, capsys):
    assert main(["verify", "--model-repository", str(repo)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "int8 kernel: " in out.splitlines()[0]
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["ok", "bert", "v1"], ["ok", "bert_fp32", "v1"], ["ok", "cls", "v1"]]

    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    _corrupt_golden(_copy_version(copy / "bert", 1, 2))
    (_copy_version(copy / "cls", 1, 2) / "golden.npz").unlink()
    assert main(["verify", "--model-repository", str(copy), "--json"]) == 1
    rows = {(r["model"], r["version"]): r for r in json.loads(capsys.readouterr().out)["versions"]}
    assert rows["bert", 2]["status"] == "failed" and "min_cosine_to_build" in rows["bert", 2]["detail"]
    assert rows["bert", 1]["status"] == "ok"
    assert rows["cls", 2]["status"] == "unchecked"


def test_verify_reports_damaged_versions_as_failed_and_checks_the_others(repo, tmp_path, capsys):
    """Issue #32, item 12: flipped bytes in model.onnx or an empty golden.npz stopped verify with
    InternalError (rc 4); each is now a failed version (rc 1) and the rest are still checked."""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    onnx_file = _copy_version(copy / "bert", 1, 2) / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[100:400] = bytes(300)
    onnx_file.write_bytes(bytes(data))
    (_copy_version(copy / "cls", 1, 2) / "golden.npz").write_bytes(b"")
    assert main(["verify", "--model-repository", str(copy), "--json"]) == 1
    rows = {(r["model"], r["version"]): r for r in json.loads(capsys.readouterr().out)["versions"]}
    for damaged in (("bert", 2), ("cls", 2)):
        assert rows[damaged]["status"] == "failed" and "cannot be checked" in rows[damaged]["detail"]
    assert rows["bert", 1]["status"] == rows["cls", 1]["status"] == rows["bert_fp32", 1]["status"] == "ok"


@pytest.mark.parametrize(("argv", "message"), [
    (["verify", "--model-repository", "/nonexistent/repo"], "does not exist"),
    (["verify", "--model-repository", "{repo}", "--model", "nope"], "no model nope"),
    (["verify", "--model-repository", "{repo}", "--emulate-cpu", "no such cpu"], "QEMU x86 CPU model"),
])
def test_verify_bad_input_is_one_line_and_exit_2(repo, capsys, argv, message):
    assert main([a.format(repo=repo) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.emulated
def test_verify_on_an_emulated_avx2_cpu_passes_through_the_runners_probe(repo, capfd):
    assert main(["verify", "--model-repository", str(repo), "--model", "bert", "--emulate-cpu", "Haswell"]) == 0
    out = capfd.readouterr().out
    assert "Haswell (emulated" in out and "int8 kernel: int16-saturating" in out
    assert out.splitlines()[1].split()[:3] == ["ok", "bert", "v1"]


@pytest.mark.triton
def test_a_version_failing_its_golden_check_is_refused_at_load_and_the_old_one_serves(repo, tmp_path):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tests.conftest import start_server
    from tests.converters.test_served import infer, text_feed
    from tritonstack.server import ModelControl

    copy = tmp_path / "repo"
    shutil.copytree(repo / "bert", copy / "bert")
    server = start_server(copy, model_control=ModelControl.EXPLICIT, load_models=("bert",))
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            feed = text_feed([5, 9])
            before = infer(client, "bert", feed, "embedding")
            _corrupt_golden(_copy_version(copy / "bert", 1, 2))
            with pytest.raises(InferenceServerException) as refused:
                client.load_model("bert")
            reason = refused.value.message()
            assert "golden self-check failed on this CPU" in reason
            assert "min_cosine_to_build" in reason and "int8 kernel" in reason
            assert client.is_model_ready("bert", "1") and not client.is_model_ready("bert", "2")
            np.testing.assert_array_equal(infer(client, "bert", feed, "embedding"), before)
    finally:
        server.close()
