"""The export pipeline on tiny models: parity, both INT8 modes, the gate, repository writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.converters import tiny
from tritonstack.converters.api import ExportSpec, export
from tritonstack.converters.errors import AccuracyBelowThreshold, InvalidSpec, ToleranceExceeded
from tritonstack.converters.repository import next_version, write_version
from tritonstack.converters.spec import Thresholds
from tritonstack.converters.steps import parity
from tritonstack.converters.triton_config import config_for_target, io_from_onnx

CLASSIFIER = "tests.converters.tiny:classifier_factory"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny.write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def spec(tmp_path: Path, **kw) -> ExportSpec:
    kw.setdefault("repository", tmp_path / "repo")
    kw.setdefault("work_dir", tmp_path / "work")
    return ExportSpec(**kw)


def test_tiny_bert_exports_pooled_embedding_fp32_and_int8(tiny_bert, tmp_path):
    report = export(spec(tmp_path, source=str(tiny_bert), name="bert", precisions=("fp32", "int8"),
                         optimize=True, evaluation_size=200, thresholds=Thresholds(min_recall_at_10=0.5,
                                                                    min_mean_cosine=0.9)), progress=None)
    names = [m.name for m in report.models]
    assert names == ["bert", "bert_int8"]
    fp32 = report.models[0]
    assert [i["name"] for i in fp32.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert fp32.outputs == [{"name": "embedding", "data_type": "TYPE_FP32", "dims": [32]}]
    assert {s.step: str(s.status) for s in report.steps}["optimize"] == "ok"
    session = ort.InferenceSession(str(fp32.path / "model.onnx"))
    ids = np.array([[101, 2000, 2001, 102, 0]], np.int64)
    out = session.run(None, {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64),
                             "token_type_ids": np.zeros_like(ids)})[0]
    assert out.shape == (1, 32)
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-5)
    meta = json.loads((report.models[1].path / "metadata.json").read_text())
    assert meta["accuracy"]["passed"] and meta["accuracy"]["kind"] == "embedding"
    assert meta["parity"]["table"][0]["ok"] is True
    assert len(meta["parity"]["cases"]) == 3
    assert meta["source"]["sha256"] and "onnxruntime" in meta["tools"]
    assert meta["thresholds_lowered"]  # we asked for looser bounds, and it says so
    assert (fp32.path / "model.py").exists()


def test_gate_fails_then_explicit_override_passes(tiny_bert, tmp_path):
    strict = Thresholds(min_mean_cosine=1.0, min_recall_at_10=0.0)
    with pytest.raises(AccuracyBelowThreshold, match="mean_cosine") as caught:
        export(spec(tmp_path, source=str(tiny_bert), name="gated", precisions=("int8",), evaluation_size=100,
                    thresholds=strict), progress=None)
    assert caught.value.failures and "mean_cosine" in caught.value.failures[0]
    assert not (tmp_path / "repo" / "gated").exists(), "a failed gate must write nothing"
    lowered = Thresholds(min_mean_cosine=0.5, min_min_cosine=0.0, min_recall_at_10=0.0)
    report = export(spec(tmp_path, source=str(tiny_bert), name="gated", precisions=("int8",),
                         evaluation_size=100, thresholds=lowered), progress=None)
    assert report.models[0].version == 1
    assert "min_mean_cosine: 0.99 -> 0.5" in report.thresholds_lowered
    # the resumed run reused the finished steps of the failed one
    assert {s.step: s.detail for s in report.steps}["onnx2int8"] == "done in a previous run"


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_classifier_int8_modes_pass_the_classification_gate(tmp_path, mode):
    report = export(spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("int8", "fp32"),
                         int8_mode=mode), progress=None)
    assert [m.name for m in report.models] == ["cls", "cls_fp32"]
    assert report.accuracy["kind"] == "classification"
    assert report.accuracy["metrics"]["accuracy_drop_points"] <= 0.5 + 1e-9
    assert report.accuracy["int8_mode"] == mode
    ops = {n.op_type for n in __import__("onnx").load(str(report.models[0].path / "model.onnx")).graph.node}
    assert ("QuantizeLinear" in ops) == (mode == "static")
    assert report.models[0].inputs == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}]
    assert report.models[0].outputs == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]


def test_parity_failure_raises_with_per_output_table(tmp_path):
    path = tiny.export_embedder_onnx(tmp_path / "m.onnx")
    model, spec_ = tiny.embedder_factory()
    cases = [spec_.example_inputs(2, {"sequence": 5})]

    def wrong(feed):
        return {"embedding": session.run(None, feed)[0] + 0.01}

    session = ort.InferenceSession(str(path))
    with pytest.raises(ToleranceExceeded) as caught:
        parity.run(parity.ParityInput(path, wrong, cases, 1e-4, 1e-3))
    row = caught.value.table[0]
    assert row["output"] == "embedding" and row["ok"] is False
    assert row["max_abs"] == pytest.approx(0.01, rel=1e-3)
    assert "max_abs" in str(caught.value) and "NO" in str(caught.value)


def test_export_of_a_trace_dependent_module_fails_parity(tmp_path):
    with pytest.raises(ToleranceExceeded, match="beyond tolerance"):
        export(spec(tmp_path, source="tests.converters.tiny:broken_factory", name="broken"), progress=None)
    assert not (tmp_path / "repo" / "broken").exists()


def test_repository_versions_are_added_and_never_overwritten(tmp_path):
    onnx_path = tiny.export_embedder_onnx(tmp_path / "m.onnx")
    config = config_for_target("onnxruntime", "emb", *io_from_onnx(onnx_path))
    repo = tmp_path / "repo"
    assert write_version(repo, config, {"model.onnx": onnx_path}, {}).name == "1"
    assert write_version(repo, config, {"model.onnx": onnx_path}, {}).name == "2"
    assert next_version(repo, "emb") == 3
    with pytest.raises(InvalidSpec, match="already exists"):
        write_version(repo, config, {"model.onnx": onnx_path}, {}, version=2)
    other = config_for_target("onnxruntime", "emb", *io_from_onnx(tiny.classifier_onnx(tmp_path)))
    with pytest.raises(InvalidSpec, match="other inputs/outputs"):
        write_version(repo, other, {"model.onnx": onnx_path}, {})
    # a write that fails midway leaves no version and no staging folder behind
    with pytest.raises(FileNotFoundError):
        write_version(repo, config, {"model.onnx": tmp_path / "missing.onnx"}, {})
    assert sorted(p.name for p in (repo / "emb").iterdir()) == ["1", "2", "config.pbtxt", "warmup"]
    assert [p.name for p in repo.iterdir()] == ["emb"]


def test_a_serving_change_rewrites_the_config_and_writes_no_version(tmp_path):
    from tritonstack.converters.api import apply_serving

    base = spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("fp32",))
    export(base, progress=None)
    folder = tmp_path / "repo" / "cls"
    assert apply_serving(base) == {"cls": "unchanged"}
    queued = spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("fp32",), max_queue_size=5,
                  instances=2)
    assert queued.fingerprint() == base.fingerprint()  # the same artifact
    assert apply_serving(queued) == {"cls": "config.pbtxt rewritten"}
    config = (folder / "config.pbtxt").read_text()
    assert "max_queue_size: 5" in config and "count: 2" in config
    assert sorted(p.name for p in folder.iterdir()) == ["1", "config.pbtxt"]
    admitting = spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("fp32",), admit_rows=4,
                     admit_ms=12.5, max_queue_delay_us=0)
    assert admitting.fingerprint() == base.fingerprint()
    assert apply_serving(admitting) == {"cls": "config.pbtxt rewritten"}
    parsed = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert parsed.parameters["admit_rows"].string_value == "4"
    assert parsed.parameters["admit_ms"].string_value == "12.5"
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 0
    assert not parsed.dynamic_batching.HasField("default_queue_policy")
    with pytest.raises(InvalidSpec, match="no version"):
        apply_serving(spec(tmp_path, source=CLASSIFIER, name="other", precisions=("fp32",)))


@pytest.mark.parametrize(("fields", "message"), [
    ({"admit_rows": 33}, r"--admit-rows must be 0..--max-batch-size \(32"),
    ({"admit_rows": -1}, "--admit-rows must be"),
    ({"admit_rows": 4, "target": "onnxruntime"}, "--admit-rows is read by the python-ort runner"),
    ({"admit_rows": 16, "preferred_batch_sizes": (8, 16)}, "--admit-rows 16 would never shed"),
    ({"max_queue_delay_us": -1}, "--max-queue-delay-us must be"),
    ({"admit_ms": -1.0}, r"--admit-ms must be 0..60000 milliseconds"),
    ({"admit_ms": float("nan")}, r"--admit-ms must be 0..60000 milliseconds"),
    ({"admit_ms": 30.0, "target": "onnxruntime"}, "--admit-ms is read by the python-ort runner"),
])
def test_serving_fields_are_checked_at_the_edge(tmp_path, fields, message):
    with pytest.raises(InvalidSpec, match=message):
        spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("fp32",), **fields)


def test_keep_bounds_the_versions_of_a_model(tmp_path):
    for _ in range(3):
        report = export(spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("fp32",), keep=2),
                        progress=None)
    assert report.models[0].version == 3
    assert sorted(p.name for p in (tmp_path / "repo" / "cls").iterdir()) == ["2", "3", "config.pbtxt"]
    with pytest.raises(InvalidSpec, match="--keep must be 1..1000"):
        spec(tmp_path, source=CLASSIFIER, name="cls", keep=0)


def test_a_new_step_is_its_class_and_a_line_in_the_plan(tmp_path, monkeypatch):
    """export() itself does not change: the step says whether it applies, runs, and is recorded."""
    import onnx

    from tritonstack.converters import api
    from tritonstack.converters import plan as plan_module
    from tritonstack.converters.steps.base import Step

    class CountNodes(Step):
        name = "count-nodes"
        check = True

        def skipped_because(self, ctx):
            return None if "int8" in ctx.served else "no INT8 model"

        def run(self, ctx):
            return {"nodes": len(onnx.load(str(ctx.served["int8"].path)).graph.node)}

        def describe(self, result):
            return f"{result['nodes']} nodes"

    monkeypatch.setattr(api, "plan", lambda spec_: [*plan_module.plan(spec_), CountNodes()])
    report = export(spec(tmp_path, source=CLASSIFIER, name="cls", precisions=("int8",)), progress=None)
    step = {s.step: s for s in report.steps}["count-nodes"]
    assert str(step.status) == "ok" and step.output["nodes"] > 0 and step.detail.endswith(" nodes")
    meta = json.loads((report.models[0].path / "metadata.json").read_text())
    assert "count-nodes" in [s["step"] for s in meta["steps"]]
