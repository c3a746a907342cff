"""Pure parts of the client, without Triton: config, error mapping, retry policy, tensors, and the
HTTP codec."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from tritonstack.client import AsyncClient, Client, ClientConfig, ClientError, ModelInfo, Status, TensorSpec, TlsConfig
from tritonstack.client._config import http_address
from tritonstack.client._errors import AttemptFailed, classify, classify_http
from tritonstack.client._http import INFER_HEADER, HttpCodec, answer, parse_infer
from tritonstack.client._images import load_digit
from tritonstack.client._pipelines import digit_inputs, embed_inputs
from tritonstack.client._retry import Endpoints, backoff_s, retryable
from tritonstack.client._tensors import (
    build_request,
    chunks,
    deserialize_bytes,
    merge,
    parse_response,
    serialize_bytes,
    validate,
)
from tritonstack.client.cli import exit_code, main

ADD_ONE = ModelInfo("add_one", "", "python", 8, (TensorSpec("INPUT", "FP32", (4,)),),
                    (TensorSpec("OUTPUT", "FP32", (4,)),))
UNBATCHED = ModelInfo("fixed", "", "onnx", 0, (TensorSpec("X", "INT64", (2, -1)),),
                      (TensorSpec("Y", "INT64", (2, -1)),))


# -- config -----------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "words"), [
    ({"urls": ()}, "urls is empty"),
    ({"urls": ("http://127.0.0.1:8000",)}, "without a scheme"),
    ({"urls": ("localhost",)}, "not host:port"),
    ({"urls": ("a:1", "a:1")}, "twice"),
    ({"timeout_s": 0}, "timeout_s must be"),
    ({"retries": -1}, "retries must be"),
    ({"backoff_initial_s": 2.0, "backoff_max_s": 1.0}, "above backoff_max_s"),
    ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
    ({"max_message_bytes": 0}, "max_message_bytes"),
    ({"access_token": ""}, "access_token is empty"),
    ({"protocol": "https"}, "protocol must be 'grpc' or 'http'"),
    ({"urls": ("http://127.0.0.1:8000",)}, "set protocol='http'"),
    ({"urls": ("localhost",), "protocol": "http"}, "give the port"),
    ({"urls": ("ftp://h:1",), "protocol": "http"}, "is not an HTTP address"),
    ({"urls": ("https://h/v2?x=1",), "protocol": "http"}, "is not an HTTP address"),
    ({"urls": ("h:70000",), "protocol": "http"}, "not in 1..65535"),
])
def test_bad_config_is_refused_with_a_config_error(kwargs: dict, words: str) -> None:
    with pytest.raises(ClientError) as info:
        ClientConfig(**kwargs)
    assert info.value.status is Status.CONFIG
    assert words in str(info.value)


def test_config_normalises_urls_and_headers_and_sends_the_token_under_tritons_prefix() -> None:
    config = ClientConfig(urls="h:1", headers={"X-Team": "search"}, access_token="t")
    assert config.urls == ("h:1",)
    assert config.metadata() == (("x-team", "search"), ("triton-grpc-protocol-triton-access-token", "t"))
    options = dict(config.channel_options())
    assert options["grpc.max_receive_message_length"] == config.max_message_bytes
    assert "grpc.keepalive_time_ms" not in options
    assert dict(ClientConfig(keepalive_time_s=30).channel_options())["grpc.keepalive_time_ms"] == 30000


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_GRPC_URLS", "a:1, b:2")
    monkeypatch.setenv("TRITON_HTTP_URLS", "https://m.modal.run")
    monkeypatch.setenv("TRITON_ACCESS_TOKEN", "secret")
    config = ClientConfig.from_env(timeout_s=3)
    assert (config.urls, config.access_token, config.timeout_s) == (("a:1", "b:2"), "secret", 3)
    assert ClientConfig.from_env(protocol="http").urls == ("https://m.modal.run",)


def test_each_protocol_defaults_to_tritons_own_port_and_http_takes_schemes_and_paths() -> None:
    assert ClientConfig().urls == ("127.0.0.1:8001",)
    assert ClientConfig(protocol="http").urls == ("127.0.0.1:8000",)
    with Client(protocol="http") as client:  # switching protocol moves the default port with it
        assert client.urls == ("127.0.0.1:8000",)
    with Client(protocol="http", urls="h:1") as client:
        assert client.urls == ("h:1",)
    assert http_address("https://m.modal.run", tls=False).base == "https://m.modal.run:443"
    assert http_address("h:8000", tls=True).base == "https://h:8000"
    assert http_address("HTTP://[::1]/triton/", tls=False).base == "http://[::1]:80/triton"
    headers = ClientConfig(protocol="http", headers={"X-Team": "a"}, access_token="t").http_headers()
    assert headers == {"x-team": "a", "triton-access-token": "t"}  # Triton's HTTP front: the key itself


def test_async_http_without_aiohttp_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as in an install of the client extra alone
    with pytest.raises(ClientError) as info:
        AsyncClient(protocol="http")
    assert info.value.status is Status.CONFIG and "[client-http]" in str(info.value)


def test_tls_needs_cert_and_key_together_and_existing_files(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ClientError, match="go together"):
        TlsConfig(client_cert=cert)
    with pytest.raises(ClientError, match="does not exist"):
        TlsConfig(root_certs=tmp_path / "missing.pem")
    assert TlsConfig(root_certs=cert).read() == (b"x", None, None)


# -- error mapping ----------------------------------------------------------------------
@pytest.mark.parametrize(("code", "details", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, "unexpected shape", Status.INVALID_ARGUMENT),
    (grpc.StatusCode.NOT_FOUND, "Request for unknown model", Status.NOT_FOUND),
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", Status.UNAVAILABLE),
    (grpc.StatusCode.UNAVAILABLE, "[request id: <id_unknown>] Exceeds maximum queue size",
     Status.OVERLOADED),
    (grpc.StatusCode.UNAVAILABLE, "in ensemble 'embed', Request timeout expired", Status.OVERLOADED),
    (grpc.StatusCode.UNAVAILABLE, "This protocol is restricted, expecting header 'x'",
     Status.PERMISSION_DENIED),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory", Status.RESOURCE_EXHAUSTED),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "Sent message larger than max (5 vs. 4)",
     Status.MESSAGE_TOO_LARGE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", Status.DEADLINE_EXCEEDED),
    (grpc.StatusCode.PERMISSION_DENIED, "", Status.PERMISSION_DENIED),
    (grpc.StatusCode.UNAUTHENTICATED, "", Status.UNAUTHENTICATED),
    (grpc.StatusCode.INTERNAL, "model raised", Status.INTERNAL),
    (grpc.StatusCode.INTERNAL, "in ensemble 'add_two', Stub process 'add_one_0_0' is not healthy.",
     Status.UNAVAILABLE),
    (grpc.StatusCode.CANCELLED, "", Status.CANCELLED),
    (grpc.StatusCode.UNIMPLEMENTED, "", Status.UNIMPLEMENTED),
    (grpc.StatusCode.UNKNOWN, "", Status.UNKNOWN),
])
def test_every_grpc_answer_maps_to_the_documented_status(code, details, status) -> None:
    assert classify(code, details) is status


@pytest.mark.parametrize(("code", "details", "status"), [
    (400, "unexpected shape for input 'INPUT'", Status.INVALID_ARGUMENT),
    (401, "", Status.UNAUTHENTICATED),
    (403, "This API is restricted, expecting header 'triton-access-token'", Status.PERMISSION_DENIED),
    (404, "Request for unknown model: 'x' is not found", Status.NOT_FOUND),
    (408, "", Status.DEADLINE_EXCEEDED),
    (413, "", Status.MESSAGE_TOO_LARGE),
    (418, "", Status.INVALID_ARGUMENT),
    (429, "", Status.RESOURCE_EXHAUSTED),
    (500, "stand-in model refuses", Status.INTERNAL),
    (500, "in ensemble 'add_two', Stub process 'add_one_0_0' is not healthy.", Status.UNAVAILABLE),
    (501, "", Status.UNIMPLEMENTED),
    (502, "HTTP 502: Bad Gateway", Status.UNAVAILABLE),
    (503, "[request id: <id_unknown>] Exceeds maximum queue size", Status.OVERLOADED),
    (503, "HTTP 503", Status.UNAVAILABLE),
    (504, "", Status.DEADLINE_EXCEEDED),
    (507, "", Status.INTERNAL),
    (302, "", Status.UNKNOWN),
])
def test_every_http_answer_maps_to_the_documented_status(code, details, status) -> None:
    assert classify_http(code, details) is status


def test_only_unavailable_is_retried_unless_overload_retries_are_opted_in() -> None:
    default, opted = ClientConfig(), ClientConfig(retry_overloaded=True)
    for status in Status:
        assert retryable(status, default) == (status is Status.UNAVAILABLE)
        assert retryable(status, opted) == (status in (Status.UNAVAILABLE, Status.OVERLOADED,
                                                       Status.RESOURCE_EXHAUSTED))
    assert not retryable(Status.INVALID_ARGUMENT, opted)


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    config = ClientConfig(backoff_initial_s=0.1, backoff_max_s=1.0, backoff_multiplier=2.0)
    caps = [backoff_s(n, config, draw=lambda: 1.0) for n in range(1, 7)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_s(3, config, draw=lambda: 0.25) == pytest.approx(0.1)


def test_round_robin_skips_a_replica_marked_down_until_its_cooldown_ends() -> None:
    now = [0.0]
    endpoints = Endpoints(("a:1", "b:1", "c:1"), cooldown_s=5.0, clock=lambda: now[0])
    assert [endpoints.pick(set()) for _ in range(4)] == [0, 1, 2, 0]
    endpoints.mark_down(1)
    assert [endpoints.pick(set()) for _ in range(4)] == [2, 0, 2, 0]
    assert endpoints.pick({0, 2}) == 1  # nothing else left untried: a down replica is still tried
    now[0] = 6.0
    assert sorted(endpoints.pick(set()) for _ in range(3)) == [0, 1, 2]


# -- tensors ----------------------------------------------------------------------------
@pytest.mark.parametrize(("inputs", "words"), [
    ({"INPUT": np.zeros(4, np.float32)}, "must have rank 2 [batch, 4], got rank 1 with shape (4,); "
                                          "add the batch axis"),
    ({"INPUT": np.zeros((2, 5), np.float32)}, "must have shape [batch, 4], got (2, 5)"),
    ({"INPUT": np.zeros((2, 4), np.float64)}, "must be float32 (FP32), got float64; convert with "
                                               "x.astype(np.float32)"),
    ({"X": np.zeros((2, 4), np.float32)}, "has no input 'X'; its inputs are INPUT"),
    ({}, "needs input 'INPUT' (FP32 [batch, 4])"),
    ({"INPUT": np.zeros((0, 4), np.float32)}, "empty batch"),
])
def test_wrong_inputs_are_refused_client_side_with_the_fix(inputs, words) -> None:
    with pytest.raises(ClientError) as info:
        validate(ADD_ONE, inputs, None)
    assert (info.value.status, info.value.origin, info.value.attempts) == (
        Status.INVALID_ARGUMENT, "client", 0)
    assert words in info.value.message


def test_unbatched_models_accept_any_size_on_variable_dims_and_check_outputs() -> None:
    assert validate(UNBATCHED, {"X": np.zeros((2, 7), np.int64)}, ["Y"]) == 0
    with pytest.raises(ClientError, match="has no output 'Z'"):
        validate(UNBATCHED, {"X": np.zeros((2, 7), np.int64)}, ["Z"])
    with pytest.raises(ClientError, match=r"rank 2 \[2, any\]"):
        validate(UNBATCHED, {"X": np.zeros((1, 2, 7), np.int64)}, None)


def test_bytes_tensors_round_trip_in_tritons_wire_form() -> None:
    array = np.array([["héllo"], [""], ["x" * 300]], dtype=object)
    raw = serialize_bytes(array)
    assert raw[:4] == (6).to_bytes(4, "little")
    back = deserialize_bytes(raw, (3, 1))
    assert back.tolist() == [[s.encode()] for s in ("héllo", "", "x" * 300)]
    with pytest.raises(ClientError, match="only str or bytes"):
        serialize_bytes(np.array([1, 2], dtype=object))


def test_request_and_response_carry_raw_little_endian_data() -> None:
    x = np.arange(8, dtype=">f4").reshape(2, 4)  # big-endian input is converted, not garbled
    request = build_request("add_one", "2", {"INPUT": x}, ["OUTPUT"])
    assert (request.model_version, request.inputs[0].datatype, list(request.inputs[0].shape)) == (
        "2", "FP32", [2, 4])
    assert np.frombuffer(request.raw_input_contents[0], "<f4").tolist() == x.ravel().tolist()
    from tritonclient.grpc import service_pb2
    response = service_pb2.ModelInferResponse()
    response.outputs.add(name="OUTPUT", datatype="FP32", shape=[2, 4])
    response.raw_output_contents.append(request.raw_input_contents[0])
    out = parse_response(response)["OUTPUT"]
    assert out.flags.writeable and out.tolist() == x.tolist()


def test_http_infer_request_is_a_json_header_then_the_raw_inputs() -> None:
    x = np.arange(8, dtype=">f4").reshape(2, 4)
    texts = np.array([["héllo"], ["x"]], dtype=object)
    call = HttpCodec().infer("my model", "2", {"INPUT": x, "TEXT": texts}, ["OUTPUT"], {"rollout_key": "u1"})
    assert (call.method, call.path) == ("POST", "/v2/models/my%20model/versions/2/infer")
    size = int(call.headers[INFER_HEADER])
    header = json.loads(call.body[:size])
    assert header == {
        "inputs": [{"name": "INPUT", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
                   {"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 15}}],
        "outputs": [{"name": "OUTPUT", "parameters": {"binary_data": True}}],
        "parameters": {"rollout_key": "u1"}}
    assert np.frombuffer(call.body[size:size + 32], "<f4").tolist() == x.ravel().tolist()
    assert call.body[size + 32:] == serialize_bytes(texts)
    every = HttpCodec().infer("m", "", {"INPUT": x}, None, None)
    assert json.loads(every.body[:int(every.headers[INFER_HEADER])])["parameters"] == {"binary_data_output": True}


def test_http_infer_answer_is_decoded_binary_or_json() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    labels = serialize_bytes(np.array([b"cat", b"dog"], dtype=object))
    header = json.dumps({"model_name": "m", "outputs": [
        {"name": "P", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
        {"name": "L", "datatype": "BYTES", "shape": [2, 1], "parameters": {"binary_data_size": len(labels)}},
        {"name": "J", "datatype": "INT64", "shape": [1, 2], "data": [7, 8]}]}).encode()
    out = parse_infer({INFER_HEADER: str(len(header))}, header + values.tobytes() + labels)
    assert out["P"].flags.writeable and out["P"].tolist() == values.tolist()
    assert out["L"].tolist() == [[b"cat"], [b"dog"]]
    assert (out["J"].dtype, out["J"].tolist()) == (np.int64, [[7, 8]])


def test_http_answers_readiness_from_the_status_and_raises_the_rest() -> None:
    ready = HttpCodec().server_ready()
    assert answer(ready, 200, {}, b"") is True
    assert answer(ready, 400, {}, b'{"error":"Model version not ready"}') is False
    with pytest.raises(AttemptFailed) as info:
        answer(ready, 403, {}, b'{"error":"This API is restricted"}')
    assert info.value.status is Status.PERMISSION_DENIED
    with pytest.raises(AttemptFailed) as info:
        answer(HttpCodec().repository_index(), 502, {}, b"<html><body>Bad   Gateway</body></html>")
    assert info.value.status is Status.UNAVAILABLE  # a proxy's page: its start, on one line
    assert info.value.details == "HTTP 502: <html><body>Bad Gateway</body></html>"
    with pytest.raises(AttemptFailed) as info:
        answer(HttpCodec().repository_index(), 200, {}, b"<html>Sign in</html>")
    assert info.value.status is Status.UNKNOWN and "not Triton's KServe v2" in info.value.details
    body = b'[{"name":"a","version":"1","state":"READY"},{"name":"b"}]'
    index = answer(HttpCodec().repository_index(), 200, {}, body)
    assert [(m.name, m.version, m.state, m.reason) for m in index] == [("a", "1", "READY", ""), ("b", "", "", "")]


def test_chunks_hold_at_most_max_batch_rows_and_merge_in_order() -> None:
    x = np.arange(21 * 4, dtype=np.float32).reshape(21, 4)
    parts = chunks({"INPUT": x}, 21, 8)
    assert [len(p["INPUT"]) for p in parts] == [8, 8, 5]
    np.testing.assert_array_equal(merge(parts)["INPUT"], x)
    assert len(chunks({"INPUT": x}, 21, 0)) == 1


# -- pipelines and images ---------------------------------------------------------------
def test_embed_inputs_are_bytes_n_by_1_and_one_string_is_one_text() -> None:
    assert embed_inputs("hi")["TEXT"].tolist() == [[b"hi"]]
    assert embed_inputs(["a", "b"])["TEXT"].shape == (2, 1)
    with pytest.raises(ClientError, match="item 1 is int"):
        embed_inputs(["a", 3])  # type: ignore[list-item]


def test_digit_inputs_accept_one_or_many_images_and_refuse_the_wrong_scale() -> None:
    assert digit_inputs(np.zeros((8, 8), np.uint8))["IMAGE"].shape == (1, 8, 8)
    assert digit_inputs(np.zeros((3, 64)))["IMAGE"].dtype == np.float32
    with pytest.raises(ClientError, match="0..16 .*x \\* 16 / 255"):
        digit_inputs(np.full((8, 8), 255.0))
    with pytest.raises(ClientError, match=r"\[n, 8, 8\]"):
        digit_inputs(np.zeros((28, 28)))


def test_png_digits_are_shrunk_inverted_and_scaled(tmp_path: Path) -> None:
    pixels = np.full((32, 32), 255, np.uint8)  # dark ink on white paper, as people draw
    pixels[0:4, 12:16] = 0
    Image.fromarray(pixels).save(tmp_path / "d.png")
    image = load_digit(tmp_path / "d.png")
    assert image.shape == (1, 8, 8)
    assert image[0, 0, 3] == pytest.approx(16.0) and image.sum() == pytest.approx(16.0)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ClientError, match=r"expected a \.png or \.npy"):
        load_digit(tmp_path / "d.txt")


# -- CLI without a server ---------------------------------------------------------------
def test_exit_codes_are_decided_by_status() -> None:
    assert exit_code(Status.INVALID_ARGUMENT) == exit_code(Status.NOT_FOUND) == 2
    assert exit_code(Status.UNAVAILABLE) == exit_code(Status.DEADLINE_EXCEEDED) == 3
    assert exit_code(Status.OVERLOADED) == 3
    assert exit_code(Status.INTERNAL) == 1


def test_cli_reports_bad_input_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--url", "http://x:1", "health"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ClientError: [config]") and err.count("\n") == 1
    assert main(["--url", "127.0.0.1:1", "infer", "m", "--input", "INPUT"]) == 2
    assert "expected NAME=FILE.npy" in capsys.readouterr().err
    assert main(["--url", "127.0.0.1:1", "classify", str(tmp_path / "none.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
