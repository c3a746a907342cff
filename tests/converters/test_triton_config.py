"""config.pbtxt generation: validation, schema round trip, golden files for every target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.converters import tiny
from tritonstack.converters.errors import InvalidSpec
from tritonstack.converters.triton_config import (
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    TensorConfig,
    config_for_target,
    io_from_onnx,
)

GOLDEN = Path(__file__).parents[1] / "golden"
TEXT_IN = tuple(TensorConfig(name, "TYPE_INT64", (-1,))
                for name in ("input_ids", "attention_mask", "token_type_ids"))
TEXT_OUT = (TensorConfig("embedding", "TYPE_FP32", (384,)),)


@pytest.mark.parametrize("target", ["python-ort", "onnxruntime", "tensorrt"])
def test_config_matches_golden_file(target):
    config = config_for_target(target, "minilm", TEXT_IN, TEXT_OUT, max_batch_size=64, instances=2,
                               intra_op_threads=2, max_queue_size=256, queue_timeout_us=40_000)
    golden = GOLDEN / f"{target}.pbtxt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(config.to_pbtxt())
    assert config.to_pbtxt() == golden.read_text()
    parsed = text_format.Parse(golden.read_text(), model_config_pb2.ModelConfig())
    assert [i.name for i in parsed.input] == ["input_ids", "attention_mask", "token_type_ids"]
    policy = parsed.dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (256, 40_000)
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT


def test_unbounded_queue_is_tritons_default():
    config = config_for_target("python-ort", "m", TEXT_IN, TEXT_OUT)
    assert "default_queue_policy" not in config.to_pbtxt()
    assert "max_queue_delay_microseconds: 1000" in config.to_pbtxt()


@pytest.mark.parametrize("policy", [{"max_queue_size": 4}, {"queue_timeout_us": 40_000}])
def test_a_queue_policy_drops_the_batcher_delay(policy):
    # A policy turns off Triton's prefetching; a delay > 0 then lets payloads merge, which
    # starves the model in Triton 2.51 (server#8870).
    batching = DynamicBatching(max_queue_delay_us=1000, **policy)
    assert batching.max_queue_delay_us == 0
    parsed = text_format.Parse(
        ModelConfig("m", TEXT_IN, TEXT_OUT, max_batch_size=8, dynamic_batching=batching).to_pbtxt(),
        model_config_pb2.ModelConfig())
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 0
    assert parsed.dynamic_batching.HasField("default_queue_policy")


def test_python_ort_marks_only_variable_inputs_ragged():
    image = (TensorConfig("image", "TYPE_FP32", (1, 8, 8)),)
    config = config_for_target("python-ort", "digits", image, (TensorConfig("logits", "TYPE_FP32", (10,)),))
    assert "allow_ragged_batch" not in config.to_pbtxt()
    text = config_for_target("python-ort", "m", TEXT_IN, TEXT_OUT)
    assert text.to_pbtxt().count("allow_ragged_batch: true") == 3
    native = config_for_target("onnxruntime", "m", TEXT_IN, TEXT_OUT)
    assert "allow_ragged_batch" not in native.to_pbtxt()


def test_io_read_from_onnx_graph(tmp_path):
    inputs, outputs = io_from_onnx(tiny.export_embedder_onnx(tmp_path / "m.onnx"))
    assert inputs == (TensorConfig("input_ids", "TYPE_INT64", (-1,)),
                      TensorConfig("attention_mask", "TYPE_INT64", (-1,)))
    assert outputs == (TensorConfig("embedding", "TYPE_FP32", (8,)),)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: TensorConfig("x", "TYPE_FLOAT", (1,)), "data_type"),
    (lambda: TensorConfig("x", "TYPE_FP32", (0,)), "dims"),
    (lambda: InstanceGroup(count=0), "instance count"),
    (lambda: DynamicBatching((0,)), "preferred"),
    (lambda: DynamicBatching(max_queue_size=-1), "max_queue_size"),
    (lambda: ModelConfig("m", TEXT_IN, TEXT_OUT, max_batch_size=8,
                         dynamic_batching=DynamicBatching((16,))), "<= max_batch_size"),
    (lambda: ModelConfig("bad/name", TEXT_IN, TEXT_OUT), "model name"),
    (lambda: ModelConfig("m", TEXT_IN, (TensorConfig("input_ids", "TYPE_FP32", (1,)),)), "unique"),
    (lambda: config_for_target("tensorflow", "m", TEXT_IN, TEXT_OUT), "unknown target"),
])
def test_invalid_configs_are_refused_with_a_reason(build, message):
    with pytest.raises(InvalidSpec, match=message):
        build()


def test_the_warmup_feeds_the_attention_mask_ones_from_a_file_written_with_the_version(tmp_path):
    """A mask of zeros masks every token, which the python-ort runner refuses: a warmup of zeros
    failed every text model's load (found by CI on a fresh clone)."""
    import numpy as np

    from tritonstack.converters import carry
    from tritonstack.converters.repository import write_version

    onnx_path = tiny.export_embedder_onnx(tmp_path / "embedder.onnx")
    inputs, outputs = io_from_onnx(onnx_path)
    config = config_for_target("python-ort", "m", inputs, outputs, max_batch_size=8)
    (warm,) = config.to_proto().model_warmup
    assert warm.inputs["attention_mask"].input_data_file == "attention_mask"
    assert warm.inputs["input_ids"].zero_data
    write_version(tmp_path / "repo", config, {"model.onnx": onnx_path, **carry.version_files("ort_runner")}, {})
    ones = np.frombuffer((tmp_path / "repo" / "m" / "warmup" / "attention_mask").read_bytes(), "<i8")
    assert ones.tolist() == [1] * 16


def test_only_an_integer_input_of_the_warmup_can_be_fed_ones():
    from tritonstack.converters.triton_config import Warmup

    with pytest.raises(InvalidSpec, match="only an integer input can be fed ones, not 'x'"):
        Warmup("w", 1, {"x": ("TYPE_FP32", (4,))}, ones=("x",))
