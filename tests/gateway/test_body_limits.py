"""Hostile bodies get one OpenAI-style 4xx answer, never an empty 500 or a traceback
(issue 22, item 11): deep JSON, deep prompts, bodies over the limit, and bodies between gRPC's
default 4 MiB receive limit and Envoy's buffer, sent over the real gRPC protocol."""

from __future__ import annotations

import json
import logging

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.gateway.app import GatewayApp

from .harness import GatewayProcess
from .test_extproc import app, drive, request_messages  # noqa: F401 (fixture)

MiB = 1 << 20


def _error(response: pb.ProcessingResponse) -> tuple[int, dict]:
    immediate = response.immediate_response
    return immediate.status.code, json.loads(immediate.body)["error"]


def test_a_100000_deep_json_array_is_a_400_without_a_traceback(app, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    out = drive(app, request_messages(b"[" * 100_000 + b"]" * 100_000))
    status, error = _error(out[1])
    assert (status, error["type"], error["code"]) == (400, "invalid_request_error", "invalid_request")
    assert error["message"].startswith("The request body nests JSON arrays or objects too deeply")
    assert not [r for r in caplog.records if r.exc_info]


def test_a_deeply_nested_prompt_is_a_400(app):  # noqa: F811
    prompt = json.loads("[" * 200 + '"x"' + "]" * 200)
    out = drive(app, request_messages({"model": "m", "prompt": prompt}))
    status, error = _error(out[1])
    assert status == 400 and error["message"] == '"prompt" nests lists or objects deeper than 32 levels'


def test_a_body_over_the_limit_is_a_413(tmp_path):
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints: []\n")
    gateway = GatewayApp(GatewayConfig.model_validate({
        "discovery": {"mode": "static", "endpointsFile": str(path)}, "models": [{"name": "m"}],
        "maxRequestBodyBytes": 65536}))
    out = drive(gateway, request_messages({"model": "m", "prompt": "x" * 70_000}))
    status, error = _error(out[1])
    assert (status, error["code"]) == (413, "request_too_large")
    assert error["message"].startswith("The request body has 70028 bytes; this gateway accepts at most 65536")


def _over_grpc(port: int, body: bytes) -> pb.ProcessingResponse:
    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = pb_grpc.ExternalProcessorStub(channel)
        responses = list(stub.Process(iter(request_messages(body)), timeout=30))
    return responses[1]


def test_bodies_between_4_and_8_mib_reach_the_gateway_over_grpc(tmp_path):
    # gRPC's default receive limit is 4 MiB and Envoy buffers 8 MiB: bodies in between used
    # to fail the stream (Envoy then answered an empty 500). Now the limit follows the body limit.
    (tmp_path / "eps.yaml").write_text("endpoints: []\n")
    gateway = GatewayProcess({"discovery": {"mode": "static", "endpointsFile": str(tmp_path / "eps.yaml")},
                              "models": [{"name": "m"}]}, tmp_path)
    try:
        for size in (5 * MiB, 8 * MiB - 100):  # prompt sizes; the JSON around them adds 31 bytes
            body = json.dumps({"model": "m", "prompt": "y" * size}).encode()
            status, error = _error(_over_grpc(gateway.grpc_port, body))
            assert (status, error["code"]) == (503, "no_ready_endpoint"), size  # parsed, routed, no pod
        status, error = _error(_over_grpc(gateway.grpc_port, json.dumps({"model": "m", "prompt": "z" * (8 * MiB)}).encode()))
        assert (status, error["code"]) == (413, "request_too_large")
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.log_path.read_text()
