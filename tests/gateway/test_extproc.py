"""The ext_proc state machine driven in process with Envoy-shaped messages, and gRPC health."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.gateway import extproc
from runtime_components.gateway.app import GatewayApp
from runtime_components.gateway.endpoints import EngineSample
from runtime_components.gateway.extproc import (
    _UNUSED_FALLBACKS,
    MAX_FALLBACK_HEADERS,
    ExtProcServicer,
    RouteAnswers,
    _response_header_values,
    header_map,
)

ADDRESSES = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]


def headers(values: dict[str, str], end_of_stream: bool = False, raw: bool = True) -> pb.HttpHeaders:
    items = [base_pb2.HeaderValue(key=k, raw_value=v.encode()) if raw else base_pb2.HeaderValue(key=k, value=v)
             for k, v in values.items()]
    return pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=items), end_of_stream=end_of_stream)


def request_messages(body: dict | bytes, extra: dict[str, str] | None = None) -> list[pb.ProcessingRequest]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return [
        pb.ProcessingRequest(request_headers=headers({":path": "/v1/completions", ":method": "POST", **(extra or {})})),
        pb.ProcessingRequest(request_body=pb.HttpBody(body=raw, end_of_stream=True)),
    ]


def response_messages(status: int, attempts: int | None = None, upstream: bool = True, body: bytes = b"") -> list[pb.ProcessingRequest]:
    values = {":status": str(status), "content-type": "application/json"}
    if upstream:
        values["x-envoy-upstream-service-time"] = "1"
    if attempts is not None:
        values["x-envoy-attempt-count"] = str(attempts)
    return [pb.ProcessingRequest(response_headers=headers(values)),
            pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=True))]


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints:\n" + "".join(f"- {{address: '{a}', model: m}}\n" for a in ADDRESSES))
    config = GatewayConfig.model_validate({"discovery": {"mode": "static", "endpointsFile": str(path)},
                                           "models": [{"name": "m", "routing": {"policy": "least-request"}}], "fallbacks": 2})
    gateway = GatewayApp(config)
    gateway.discovery.load()
    now = time.monotonic()
    for i, address in enumerate(ADDRESSES):  # 7001 is idlest, then 7002, then 7003
        gateway.table.record_sample(address, EngineSample(running=float(i), waiting=0.0), now)
    return gateway


class FakeStreamContext:
    """gRPC's reader/writer API of one stream: ``read`` hands out ``messages`` then EOF,
    ``write`` collects the answers."""

    def __init__(self, messages: list[pb.ProcessingRequest]) -> None:
        self._messages = list(messages)
        self.written: list[pb.ProcessingResponse] = []

    async def read(self) -> object:
        return self._messages.pop(0) if self._messages else grpc.aio.EOF

    async def write(self, response: pb.ProcessingResponse) -> None:
        self.written.append(response)


def drive(app: GatewayApp, messages: list[pb.ProcessingRequest]) -> list[pb.ProcessingResponse]:
    context = FakeStreamContext(messages)
    asyncio.run(ExtProcServicer(app.core).Process(None, context))  # type: ignore[arg-type]
    return context.written


def set_headers(response: pb.ProcessingResponse) -> dict[str, str]:
    mutation = response.request_body.response.header_mutation
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}


def test_header_map_reads_raw_value_and_value():
    assert header_map(headers({"A": "1", "b": "2"})) == {"a": "1", "b": "2"}
    assert header_map(headers({"x": "old-style"}, raw=False)) == {"x": "old-style"}


def test_routed_request_names_destination_and_fallbacks(app):
    out = drive(app, request_messages({"model": "m", "prompt": "hi"}, {"x-gateway-destination-fallback-2": "10.9.9.9:1"}))
    assert out[0].WhichOneof("response") == "request_headers"
    routed = out[1]
    assert routed.request_body.response.clear_route_cache
    assert set_headers(routed) == {
        "x-gateway-destination-endpoint": ADDRESSES[0], "target-pod": ADDRESSES[0],
        "x-gateway-destination-fallback-1": ADDRESSES[1], "x-gateway-destination-fallback-2": ADDRESSES[2],
    }
    mutation = routed.request_body.response.header_mutation
    assert list(mutation.remove_headers) == [f"x-gateway-destination-fallback-{k}" for k in range(3, 11)]
    # The stream ended before any response it asked for (the first request is always a workload
    # sample): the request is settled as aborted, nothing stays in flight.
    assert app.table.inflight(ADDRESSES[0]) == 0
    assert 'aibrix_gateway_requests_total{model="m",policy="least-request",status="aborted"} 1.0' in app.metrics.render().decode()


def _gateway(tmp_path, **config: object) -> GatewayApp:
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints:\n" + "".join(f"- {{address: '{a}', model: m}}\n" for a in ADDRESSES))
    gateway = GatewayApp(GatewayConfig.model_validate({
        "discovery": {"mode": "static", "endpointsFile": str(path)}, "models": [{"name": "m"}], **config}))
    gateway.discovery.load()
    return gateway


def test_a_request_nothing_needs_the_response_of_skips_the_response_phases(tmp_path):
    gateway = _gateway(tmp_path, responses={"workloadSamplesPerS": 0})
    out = drive(gateway, request_messages({"model": "m", "prompt": "hi"}))
    assert len(out) == 2 and not out[0].HasField("mode_override")
    # Envoy ends the stream when the HTTP stream ends: that is the request's end.
    assert sum(gateway.table.inflight(a) for a in ADDRESSES) == 0
    metrics = gateway.metrics.render().decode()
    assert 'aibrix_gateway_requests_total{model="m",policy="least-request",status="unobserved"} 1.0' in metrics
    assert "aibrix_gateway_request_token_buckets_total{" not in metrics


@pytest.mark.parametrize("config", [
    {"rateLimits": {"tiers": {"t": {"rpm": 100, "tpm": 1000}}, "defaultTier": "t"}, "responses": {"workloadSamplesPerS": 0}},
    {"responses": {"processAll": True, "workloadSamplesPerS": 0}},
    {"responses": {"workloadSamplesPerS": 1}},  # the first request is always due
], ids=["tpm-budget", "process-all", "workload-sample"])
def test_a_request_whose_response_is_needed_turns_the_response_phases_on(tmp_path, config):
    gateway = _gateway(tmp_path, **config)
    out = drive(gateway, request_messages({"model": "m", "prompt": "hi"}))
    mode = out[0].mode_override
    assert out[0].HasField("mode_override")
    assert (mode.request_body_mode, mode.response_header_mode, mode.response_body_mode) == (
        mode.BUFFERED, mode.SEND, mode.STREAMED)  # the request body must still be sent


def test_a_full_exchange_settles_the_request(app):
    body = b'{"usage": {"prompt_tokens": 40, "completion_tokens": 3}}'
    out = drive(app, request_messages({"model": "m", "prompt": "hi"}) + response_messages(200, body=body))
    assert len(out) == 4 and app.table.inflight(ADDRESSES[0]) == 0
    metrics = app.metrics.render().decode()
    assert 'aibrix_gateway_request_token_buckets_total{input_bucket="64",model="m",output_bucket="16"} 1.0' in metrics
    assert 'aibrix_gateway_requests_total{model="m",policy="least-request",status="200"} 1.0' in metrics


def test_a_retried_request_takes_failed_endpoints_out(app):
    drive(app, request_messages({"model": "m", "prompt": "hi"}) + response_messages(200, attempts=3, body=b"{}"))
    assert app.table.is_down(ADDRESSES[0]) and app.table.is_down(ADDRESSES[1]) and not app.table.is_down(ADDRESSES[2])
    assert [app.table.inflight(a) for a in ADDRESSES] == [0, 0, 0]
    up, down = app.table.states("m", time.monotonic())
    assert [s.address for s in up] == [ADDRESSES[2]] and down == 2


def test_envoys_own_503_marks_every_tried_endpoint_down(app):
    drive(app, request_messages({"model": "m", "prompt": "hi"}) + response_messages(503, upstream=False, body=b"upstream connect error"))
    assert all(app.table.is_down(a) for a in ADDRESSES)
    out = drive(app, request_messages({"model": "m", "prompt": "again"}))
    error = json.loads(out[1].immediate_response.body)
    assert out[1].immediate_response.status.code == 503
    assert error["error"]["message"] == 'No ready endpoint for "m": 3 endpoint(s) are failing'


def test_envoys_503_with_an_attempt_count_marks_only_the_tried_endpoints(app):
    drive(app, request_messages({"model": "m", "prompt": "hi"}) + response_messages(503, attempts=2, upstream=False))
    assert [app.table.is_down(a) for a in ADDRESSES] == [True, True, False]


@pytest.mark.parametrize("status,upstream", [(500, True), (503, True), (504, False)])
def test_other_failures_are_not_connection_failures(app, status, upstream):
    # an engine's own 5xx (it answered), or Envoy's 504 route timeout: the pod is not dead
    drive(app, request_messages({"model": "m", "prompt": "hi"}) + response_messages(status, upstream=upstream, body=b"{}"))
    assert not any(app.table.is_down(a) for a in ADDRESSES)


@pytest.mark.parametrize("path,method,status,fragment", [
    ("/v1/models", "GET", 200, '"id": "m"'),
    ("/v1/completions", "GET", 400, "has no body"),
])
def test_bodiless_requests_are_answered_at_the_headers(app, path, method, status, fragment):
    out = drive(app, [pb.ProcessingRequest(request_headers=headers({":path": path, ":method": method}, end_of_stream=True))])
    assert out[0].immediate_response.status.code == status
    assert fragment in out[0].immediate_response.body.decode()


def test_policy_header_override_only_when_allowed(app, tmp_path):
    out = drive(app, request_messages({"model": "m", "prompt": "hi"}, {"x-routing-policy": "not-a-policy"}))
    assert out[1].WhichOneof("response") == "request_body"  # ignored: the stack does not allow overrides
    config = app.config.model_copy(update={"models": [app.config.models[0].model_copy(update={
        "routing": app.config.models[0].routing.model_copy(update={"allow_header_override": True})})]})
    allowed = GatewayApp(config)
    allowed.discovery.load()
    out = drive(allowed, request_messages({"model": "m", "prompt": "hi"}, {"x-routing-policy": "not-a-policy"}))
    assert out[1].immediate_response.status.code == 400
    assert "x-routing-policy header is not a valid policy" in out[1].immediate_response.body.decode()
    out = drive(allowed, request_messages({"model": "m", "prompt": "hi"}, {"x-routing-policy": "random"}))
    assert out[1].WhichOneof("response") == "request_body"


def test_grpc_health_service(app):
    async def run():
        await app.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
                check = channel.unary_unary("/grpc.health.v1.Health/Check")
                whole = await check(b"", timeout=5)
                named = await check(b"\x0a\x2b" + b"envoy.service.ext_proc.v3.ExternalProcessor", timeout=5)
                unknown = await check(b"\x0a\x03abc", timeout=5)
                return whole, named, unknown
        finally:
            await app.stop()

    config = app.config.model_copy(update={"listen": app.config.listen.model_copy(update={"host": "127.0.0.1", "grpc_port": 0, "http_port": 0})})
    app = GatewayApp(config)
    assert asyncio.run(run()) == (b"\x08\x01", b"\x08\x01", b"\x08\x03")


def test_a_failing_limiter_store_fails_open_and_is_counted(app):
    class BrokenStore:
        async def apply(self, key, mode, cost, limit):
            raise ConnectionError("redis is down")

        async def close(self):
            return None

    from aibrix_spec.components.gateway import TierSpec
    from runtime_components.gateway.ratelimit import RateLimiter
    from runtime_components.gateway.users import UserDirectory

    app.core.limiter = RateLimiter({"t": TierSpec(rpm=1, tpm=1)}, BrokenStore(), 60.0)
    app.core.users = UserDirectory(None, {"t"}, "t")
    body = b'{"usage": {"prompt_tokens": 4, "completion_tokens": 3}}'
    out = drive(app, request_messages({"model": "m", "prompt": "hi"}) + response_messages(200, body=body))
    assert out[1].WhichOneof("response") == "request_body"  # routed, not refused
    assert "aibrix_gateway_rate_limit_errors_total 2.0" in app.metrics.render().decode()  # admit + token charge


@pytest.mark.parametrize("values, raw, expected", [
    ({":status": "200", "content-type": "text/event-stream", "server": "envoy"}, True,
     {":status": "200", "content-type": "text/event-stream"}),
    ({":status": "503", "X-Envoy-Attempt-Count": "2", "date": "x"}, True, {":status": "503", "x-envoy-attempt-count": "2"}),
    ({":status": "200", "x-envoy-upstream-service-time": "7"}, False, {":status": "200", "x-envoy-upstream-service-time": "7"}),
    ({"via": "proxy", "content-length": "10"}, True, {}),
])
def test_response_headers_keep_only_the_names_the_gateway_reads(values, raw, expected):
    assert _response_header_values(headers(values, raw=raw)) == expected


def test_a_repeated_response_header_keeps_its_first_value():
    items = [base_pb2.HeaderValue(key=":status", raw_value=b"200"), base_pb2.HeaderValue(key="content-type", raw_value=b"a/b"),
             base_pb2.HeaderValue(key="Content-Type", raw_value=b"c/d")]
    assert _response_header_values(pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=items)))["content-type"] == "a/b"


@pytest.mark.parametrize("status_text, expected", [("200", 200), ("", 0), ("abc", 0)])
def test_response_status_text_becomes_the_admission_status(app, status_text, expected):
    messages = request_messages({"model": "m", "prompt": "hi"})
    messages.append(pb.ProcessingRequest(response_headers=headers({":status": status_text}, end_of_stream=True)))
    statuses: list[int] = []
    original = app.core.finish

    async def spy(admission, usage, success):
        statuses.append(admission.status)
        await original(admission, usage, success)

    app.core.finish = spy  # type: ignore[method-assign]
    drive(app, messages)
    assert statuses == [expected]


@pytest.mark.parametrize("pieces", [1, 2, 5])
def test_a_request_body_in_several_messages_is_joined_before_parsing(app, pieces):
    raw = json.dumps({"model": "m", "prompt": "a prompt long enough to be cut into pieces"}).encode()
    step = -(-len(raw) // pieces)
    chunks = [raw[i:i + step] for i in range(0, len(raw), step)]
    messages = [pb.ProcessingRequest(request_headers=headers({":path": "/v1/completions", ":method": "POST"}))]
    messages += [pb.ProcessingRequest(request_body=pb.HttpBody(body=c, end_of_stream=i == len(chunks) - 1)) for i, c in enumerate(chunks)]
    out = drive(app, messages)
    assert [r.WhichOneof("response") for r in out] == ["request_headers"] + ["request_body"] * len(chunks)
    assert set_headers(out[-1])["x-gateway-destination-endpoint"] == ADDRESSES[0]


@pytest.mark.parametrize("used", range(MAX_FALLBACK_HEADERS + 1))
def test_each_fallback_slot_is_either_set_or_removed(used):
    names = {f"x-gateway-destination-fallback-{k}" for k in range(1, MAX_FALLBACK_HEADERS + 1)}
    removed = set(_UNUSED_FALLBACKS[used])
    assert len(removed) == MAX_FALLBACK_HEADERS - used
    assert removed | {f"x-gateway-destination-fallback-{k}" for k in range(1, used + 1)} == names


def _answer_for(address: str, fallbacks: tuple[str, ...], body: bytes | None = None,
                traceparent: str | None = None) -> SimpleNamespace:
    """The fields of an Admission that the body phase's answer reads."""
    return SimpleNamespace(endpoint=SimpleNamespace(address=address), fallbacks=fallbacks, body=body,
                           traceparent=traceparent)


def test_requests_routed_alike_share_one_answer(app):
    servicer = ExtProcServicer(app.core)
    answers = []
    for _ in range(2):
        context = FakeStreamContext(request_messages({"model": "m", "prompt": "hi"}))
        asyncio.run(servicer.Process(None, context))  # type: ignore[arg-type]
        answers.append(context.written[1])
    assert set_headers(answers[0])["x-gateway-destination-endpoint"] == ADDRESSES[0]
    assert answers[0] is answers[1]


def test_an_answer_with_a_body_or_a_trace_context_is_built_for_its_request():
    answers = RouteAnswers()
    plain = answers(_answer_for(ADDRESSES[0], (ADDRESSES[1],)))  # type: ignore[arg-type]
    with_body = answers(_answer_for(ADDRESSES[0], (ADDRESSES[1],), body=b'{"model":"t"}'))  # type: ignore[arg-type]
    traced = answers(_answer_for(ADDRESSES[0], (ADDRESSES[1],), traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"))  # type: ignore[arg-type]
    assert with_body is not plain and traced is not plain
    assert with_body.request_body.response.body_mutation.body == b'{"model":"t"}'
    assert set_headers(traced)["traceparent"].startswith("00-")
    assert "traceparent" not in set_headers(plain) and not plain.request_body.response.HasField("body_mutation")
    assert answers(_answer_for(ADDRESSES[0], (ADDRESSES[1],))) is plain  # type: ignore[arg-type]


def test_route_answers_stay_bounded_and_right(monkeypatch):
    monkeypatch.setattr(extproc, "ROUTE_ANSWERS_MAX", 4)
    answers = RouteAnswers()
    for port in range(10):
        address = f"10.0.0.1:{8000 + port}"
        answer = answers(_answer_for(address, ("10.0.0.2:8000",)))  # type: ignore[arg-type]
        assert set_headers(answer)["x-gateway-destination-endpoint"] == address
        assert set_headers(answer)["x-gateway-destination-fallback-1"] == "10.0.0.2:8000"
        assert len(answers._answers) <= 4


def _body_answer(gateway: GatewayApp, extra: dict[str, str] | None = None) -> object:
    """What the session answers the body message with: a response, or a coroutine of one."""
    session = extproc.ExtProcSession(ExtProcServicer(gateway.core))
    first, body = request_messages({"model": "m", "prompt": "hi"}, extra)
    session.on_message(first)
    return session.on_message(body)


def test_a_request_nothing_can_hold_is_admitted_without_waiting_and_one_that_may_wait_is_not(tmp_path):
    free = _gateway(tmp_path, responses={"workloadSamplesPerS": 0})
    answer = _body_answer(free)
    assert isinstance(answer, pb.ProcessingResponse)  # no task needed: the common case
    assert set_headers(answer)["x-gateway-destination-endpoint"] in ADDRESSES

    limited = _gateway(tmp_path, rateLimits={"tiers": {"t": {"rpm": 100, "tpm": 1000}}, "defaultTier": "t"},
                       responses={"workloadSamplesPerS": 0})
    pending = _body_answer(limited)
    assert asyncio.iscoroutine(pending)  # the limits are counted in the store first
    answer = asyncio.run(pending)
    assert set_headers(answer)["x-gateway-destination-endpoint"] in ADDRESSES

    held = _gateway(tmp_path, flowControl={"enabled": True}, responses={"workloadSamplesPerS": 0})
    pending = _body_answer(held)
    assert asyncio.iscoroutine(pending)  # flow control may hold it
    pending.close()


@pytest.mark.parametrize("limited", [False, True], ids=["admitted-at-once", "admitted-after-limits"])
def test_a_bug_while_admitting_is_a_json_500_and_a_logged_traceback(tmp_path, caplog, limited):
    extra = {"rateLimits": {"tiers": {"t": {"rpm": 100, "tpm": 1000}}, "defaultTier": "t"}} if limited else {}
    gateway = _gateway(tmp_path, responses={"workloadSamplesPerS": 0}, **extra)

    def broken(request, pool):
        raise RuntimeError("a bug in a policy")

    for router in gateway.core._routers.values():
        router.decide = broken  # type: ignore[method-assign]
    out = drive(gateway, request_messages({"model": "m", "prompt": "hi"}))
    refusal = out[1].immediate_response
    assert refusal.status.code == 500
    assert json.loads(refusal.body)["error"]["code"] == "internal_error"
    assert "a bug in a policy" in caplog.text and "Traceback" in caplog.text
    assert sum(gateway.table.inflight(a) for a in ADDRESSES) == 0


def test_a_disaggregated_request_admitted_at_once_is_settled_even_if_its_prefill_never_starts(tmp_path):
    """Admission counted the request in flight before the prefill step's task exists; a reset
    that closes that task unstarted must still leave the stream's end something to settle."""
    gateway = _gateway(tmp_path, responses={"workloadSamplesPerS": 0})
    prepared: list[str] = []

    class Disaggregated:
        def disaggregated(self, model: str) -> bool:
            return True

        async def prepare(self, admission, path, body) -> None:
            prepared.append(path)

    session = extproc.ExtProcSession(ExtProcServicer(gateway.core, Disaggregated()))  # type: ignore[arg-type]
    first, body = request_messages({"model": "m", "prompt": "hi"})
    session.on_message(first)
    pending = session.on_message(body)
    assert asyncio.iscoroutine(pending)
    assert sum(gateway.table.inflight(a) for a in ADDRESSES) == 1
    pending.close()  # what the HTTP/2 server does to a step whose stream was reset before it ran
    session.on_end()
    assert sum(gateway.table.inflight(a) for a in ADDRESSES) == 0 and prepared == []
