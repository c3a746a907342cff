"""Activation smoothing (an FP32 identity) and per-token INT8 rewriting, on tiny random BERTs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.converters import tiny
from tritonstack.converters import feeds as feeds_mod
from tritonstack.converters.api import ExportSpec, export
from tritonstack.converters.sources.hf import HFSource
from tritonstack.converters.sources.resolve import resolve_source
from tritonstack.converters.spec import Thresholds
from tritonstack.converters.steps import hf2onnx, onnx2int8, per_token, smooth
from tritonstack.converters.steps.base import OnnxModel, ort_session, run_batches

SENTENCES = [
    "Return the number of items in the container.",
    "A cat sits on the mat.",
    "Open the file and read every line into a list of strings.",
    "The queue is empty.",
] * 4


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[HFSource, OnnxModel]:
    folder = tiny.write_tiny_bert(tmp_path_factory.mktemp("bert"), layers=2)
    source = resolve_source(str(folder), None)
    assert isinstance(source, HFSource)
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    model = hf2onnx.run(hf2onnx.Hf2OnnxInput(source.folder, "feature-extraction", 17, out))
    return source, model


def _feeds(source: HFSource) -> list[dict[str, np.ndarray]]:
    return feeds_mod.tokenize(source, SENTENCES, batch_size=8)


def _embed(path: Path, feeds) -> np.ndarray:
    return run_batches(ort_session(path), feeds, "embedding")


def test_smoothing_is_an_fp32_identity(bert, tmp_path):
    source, model = bert
    result = smooth.run(smooth.SmoothInput(model, tmp_path / "smoothed.onnx",
                                           lambda: feeds_mod.text_calibration(source, 32)))
    # 2 layers: Q/K/V share one LayerNorm output (x2 layers) and each FFN input is one: 4 groups
    assert (result.smoothed, result.matmuls) == (4, 8)
    graph = onnx.load(str(result.model.path)).graph
    assert sum(n.op_type == "Mul" and n.name.startswith("smooth_") for n in graph.node) == 4
    feeds = _feeds(source)
    np.testing.assert_allclose(_embed(result.model.path, feeds), _embed(model.path, feeds), atol=2e-6)


def test_smoothing_scales_follow_the_formula_and_spare_dead_channels():
    s = smooth.smoothing_scales(np.array([4.0, 1.0, 0.0]), np.array([1.0, 0.25, 0.5]), 0.5)
    np.testing.assert_allclose(s, [2.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        smooth.run(smooth.SmoothInput(OnnxModel(Path("x"), (), ()), Path("y"), lambda: [], alpha=1.5))


def test_per_token_plan_picks_the_ffn_matmuls(bert):
    _, model = bert
    plan = per_token.plan(onnx.load(str(model.path)))
    assert sorted(plan.values()) == ["shift", "shift", "sym", "sym"]
    assert all(("intermediate" in name) == (mode == "sym") for name, mode in plan.items())


def test_per_token_int8_agrees_with_fp32(bert, tmp_path):
    source, model = bert
    feeds = _feeds(source)
    reference = _embed(model.path, feeds)
    tokens = onnx2int8.run(onnx2int8.Int8Input(model, "dynamic", tmp_path / "pt" / "model.onnx",
                                               per_token=True))
    ops = {n.op_type for n in onnx.load(str(tokens.path)).graph.node}
    assert {"MatMulInteger", "QuantizeLinear"} <= ops
    assert not (tmp_path / "pt" / "model.per-token.onnx").exists()
    cosine = np.sum(_embed(tokens.path, feeds) * reference, axis=1)
    assert cosine.min() > 0.99


def _gelu_matmul(with_bias: bool, opset: int) -> onnx.ModelProto:
    """x [B, S, 8] -> erf GELU -> MatMul W [8, 5] (+ bias)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 5)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(rng.normal(size=5).astype(np.float32), "b")]
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["g"]),
             helper.make_node("MatMul", ["g", "W"], ["mm"], name="mm")]
    nodes.append(helper.make_node("Add", ["b", "mm"], ["y"]) if with_bias
                 else helper.make_node("Identity", ["mm"], ["y"]))
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(("with_bias", "opset"), [(True, 17), (False, 17), (True, 18)])
def test_shifted_gelu_matmul_is_quantized_per_token_with_the_offset_corrected(tmp_path, with_bias, opset):
    model = _gelu_matmul(with_bias, opset)
    float_path, int_path = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(float_path))
    assert per_token.plan(model) == {"mm": "shift"}
    assert per_token.rewrite(model) == 1
    onnx.checker.check_model(model)
    onnx.save(model, str(int_path))
    x = np.random.default_rng(1).normal(scale=2.0, size=(3, 4, 8)).astype(np.float32)
    x[0, 0] *= 20  # an outlier token must not cost the other tokens their resolution
    want = ort_session(float_path).run(None, {"x": x})[0]
    got = ort_session(int_path).run(None, {"x": x})[0]
    assert got.shape == want.shape
    rel = np.abs(got - want).max(axis=-1) / np.abs(want).max(axis=-1)
    assert rel.max() < 0.03


def test_old_opsets_are_left_alone():
    model = _gelu_matmul(True, 12)
    assert per_token.rewrite(model) == 0


def test_export_runs_smoothing_and_per_token_by_default_and_per_tensor_on_request(bert, tmp_path):
    source, _ = bert
    loose = Thresholds(min_mean_cosine=0.9, min_recall_at_10=0.5)
    common = dict(source=str(source.folder), precisions=("int8",), evaluation_size=100, thresholds=loose,
                  repository=tmp_path / "repo")
    report = export(ExportSpec(name="tok", work_dir=tmp_path / "w1", **common), progress=None)
    steps = {s.step: s for s in report.steps}
    assert str(steps["smooth"].status) == "ok"
    assert report.accuracy["activations"] == "per-token"
    meta = json.loads((report.models[0].path / "metadata.json").read_text())
    assert meta["spec"]["int8_activations"] == "per-token"
    plain = export(ExportSpec(name="plain", work_dir=tmp_path / "w2", int8_activations="per-tensor",
                              **common), progress=None)
    steps = {s.step: s for s in plain.steps}
    assert str(steps["smooth"].status) == "skipped"
    assert plain.accuracy["activations"] == "per-tensor"
    ops = {n.op_type for n in onnx.load(str(plain.models[0].path / "model.onnx")).graph.node}
    assert "QuantizeLinear" not in ops


def test_unknown_int8_activations_is_refused():
    from tritonstack.converters.errors import InvalidSpec

    with pytest.raises(InvalidSpec, match="int8-activations"):
        ExportSpec(source="minilm", name="m", int8_activations="per-channel")
