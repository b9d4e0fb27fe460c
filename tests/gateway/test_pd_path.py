"""The prefill step driven through the ext_proc servicer in process, against a fake prefill
engine on a real port (aiohttp): the bodies each side gets (vLLM NIXL and KV pool, SGLang
bootstrap rooms), every fallback reason, and the configuration the gateway refuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.engine_sim.pd import prefill_request_params
from runtime_components.gateway.app import GatewayApp, StartupError
from runtime_components.gateway.discovery.static import EndpointsFileError, load_endpoints_file
from runtime_components.gateway.endpoints import EngineSample
from runtime_components.gateway.extproc import ExtProcServicer
from runtime_components.gateway.pd import prefill_pool, role_specs
from runtime_components.gateway.pd.bodies import NIXL_PREFILL_PARAMS, sglang_bodies, vllm_prefill_body

from .test_extproc import FakeStreamContext

DECODE = "127.0.0.1:7001"
LONG = "the schema of the sales database has many tables " * 20  # ~250 tokens
ANSWERED = {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": "p0", "remote_block_ids": [1, 2],
            "remote_host": "127.0.0.1", "remote_port": 1, "aibrix_prompt_tokens": 250}


class FakePrefill:
    """A prefill engine on a real port that records what it got and answers as told."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.traceparents: list[str | None] = []
        self.request_ids: list[str | None] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.traceparents.append(request.headers.get("traceparent"))
        self.request_ids.append(request.headers.get("x-request-id"))
        if self.mode == "status":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "not-json":
            return web.Response(text="<html>")
        answer: dict[str, Any] = {"usage": {"prompt_tokens": 250, "completion_tokens": 1}}
        if self.mode == "ok":
            answer["kv_transfer_params"] = ANSWERED
        return web.json_response(answer)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway(tmp_path: Path, prefill: str | None, flow: dict[str, Any] | None = None, **disaggregation: Any) -> GatewayApp:
    lines = [f"- {{address: '{DECODE}', model: m}}"]
    if prefill is not None:
        lines.append(f"- {{address: '{prefill}', model: m, role: prefill}}")
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints:\n" + "\n".join(lines) + "\n")
    pd = {"transfer": "nixl", "minPromptTokens": 100, "prefillTimeoutS": 0.3, **disaggregation}
    config = GatewayConfig.model_validate({"discovery": {"mode": "static", "endpointsFile": str(path)},
                                           "models": [{"name": "m", "disaggregation": pd}],
                                           "flowControl": flow or {}})
    app = GatewayApp(config)
    app.discovery.load()
    now = time.monotonic()
    for address in [DECODE] + ([prefill] if prefill else []):
        app.table.record_sample(address, EngineSample(running=0.0, waiting=0.0), now)
    return app


async def send(app: GatewayApp, body: dict[str, Any] | bytes, path: str = "/v1/completions") -> tuple[dict[str, str], dict | None]:
    """One request through the servicer: (the headers it set, the body it sent on, or None: the client's)."""
    sent_headers = {":path": path, ":method": "POST", "x-request-id": "req-1"}  # Envoy adds x-request-id
    items = [base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in sent_headers.items()]
    stream = FakeStreamContext([
        pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=items))),
        pb.ProcessingRequest(request_body=pb.HttpBody(body=body if isinstance(body, bytes) else json.dumps(body).encode(),
                                                      end_of_stream=True)),
    ])
    await ExtProcServicer(app.core, app.pd).Process(None, stream)  # type: ignore[arg-type]
    common = stream.written[1].request_body.response
    set_headers = {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}
    sent = json.loads(common.body_mutation.body) if common.HasField("body_mutation") else None
    if sent is not None:
        assert set_headers["content-length"] == str(len(common.body_mutation.body))
    return set_headers, sent


def metric(app: GatewayApp, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_nixl_prefill_gets_one_token_and_the_decode_pod_gets_its_parameters(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill()
        app = gateway(tmp_path, await fake.start())
        try:
            client = {"model": "m", "prompt": LONG, "max_tokens": 64, "min_tokens": 8, "stream": True,
                      "stream_options": {"include_usage": True}}
            headers, sent = await send(app, client)
        finally:
            await app.pd.close()
            await fake.stop()
        assert headers["x-gateway-destination-endpoint"] == DECODE
        assert fake.bodies == [{"model": "m", "prompt": LONG, "max_tokens": 1, "stream": False,
                                "kv_transfer_params": NIXL_PREFILL_PARAMS}]
        assert sent == {**client, "kv_transfer_params": ANSWERED}  # streamed from the decode pod as asked
        assert fake.request_ids == ["req-1"]  # the decode request carries the same id through Envoy
        assert app.table.inflight(f"127.0.0.1:{fake.port}") == 0
        assert metric(app, "aibrix_gateway_pd_requests_total", model="m", path="disaggregated") == 1
        assert metric(app, "aibrix_gateway_pd_prefill_seconds_count", model="m") == 1

    run(main())


def test_with_the_kv_pool_the_decode_body_is_the_clients(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill("no-params")
        app = gateway(tmp_path, await fake.start(), transfer="kv-pool")
        try:
            _, sent = await send(app, {"model": "m", "messages": [{"role": "user", "content": LONG}],
                                       "max_completion_tokens": 30}, "/v1/chat/completions")
        finally:
            await app.pd.close()
            await fake.stop()
        assert fake.bodies[0]["max_completion_tokens"] == 1 and fake.bodies[0]["max_tokens"] == 1
        assert "kv_transfer_params" not in fake.bodies[0]
        assert sent is None  # the decode pod finds the prompt's blocks in the pool
        assert metric(app, "aibrix_gateway_pd_requests_total", model="m", path="disaggregated") == 1

    run(main())


def test_a_short_prompt_skips_the_prefill_pod(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill()
        app = gateway(tmp_path, await fake.start())
        try:
            headers, sent = await send(app, {"model": "m", "prompt": "short", "max_tokens": 4})
        finally:
            await app.pd.close()
            await fake.stop()
        assert fake.bodies == [] and sent is None and headers["x-gateway-destination-endpoint"] == DECODE
        assert metric(app, "aibrix_gateway_pd_requests_total", model="m", path="short") == 1

    run(main())


@pytest.mark.parametrize("mode, reason", [
    ("status", "status"), ("no-params", "bad_answer"), ("not-json", "bad_answer"), ("slow", "timeout"),
    ("refused", "connect_error"), ("absent", "no_prefill_pod"),
])
def test_every_prefill_failure_decodes_in_place(tmp_path: Path, mode: str, reason: str) -> None:
    async def main() -> None:
        fake = FakePrefill(mode)
        address = await fake.start()
        if mode == "refused":
            address = f"127.0.0.1:{closed_port()}"
        app = gateway(tmp_path, None if mode == "absent" else address)
        try:
            client = {"model": "m", "prompt": LONG, "max_tokens": 8}
            headers, sent = await send(app, client)
        finally:
            await app.pd.close()
            await fake.stop()
        assert headers["x-gateway-destination-endpoint"] == DECODE
        assert sent is None  # the client's own body, decoded in place
        assert metric(app, "aibrix_gateway_pd_requests_total", model="m", path="fallback") == 1
        assert metric(app, "aibrix_gateway_pd_fallbacks_total", model="m", reason=reason) == 1
        assert app.table.inflight(address) == 0
        if mode == "refused":  # out of the candidates until a scrape succeeds again
            assert app.table.is_down(address)

    run(main())


def test_flow_control_holds_on_the_decode_pool_only(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill()
        address = await fake.start()
        app = gateway(tmp_path, address, flow={"enabled": True, "queueTimeoutS": 1,
                                               "saturation": {"maxWaitingPerEngine": 4}})
        # the prefill pod is far past saturation; the decode pod has room: nothing is held
        app.table.record_sample(address, EngineSample(running=50.0, waiting=500.0), time.monotonic())
        try:
            headers, sent = await send(app, {"model": "m", "prompt": LONG, "max_tokens": 8})
        finally:
            await app.pd.close()
            await fake.stop()
        assert headers["x-gateway-destination-endpoint"] == DECODE and sent is not None
        assert sent["kv_transfer_params"] == ANSWERED and len(fake.bodies) == 1

    run(main())


def test_sglang_pairs_share_one_bootstrap_room(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill("no-params")
        app = gateway(tmp_path, await fake.start(), transfer="mooncake", bootstrapPort=8998)
        try:
            client = {"model": "m", "prompt": LONG, "max_tokens": 40, "stream": True}
            _, sent = await send(app, client)
            for _ in range(200):  # the prefill call is fired, not awaited
                if fake.bodies:
                    break
                await asyncio.sleep(0.01)
        finally:
            await app.pd.close()
            await fake.stop()
        assert sent is not None and fake.bodies
        room = sent["bootstrap_room"]
        assert isinstance(room, int) and 0 <= room < 2**63
        assert sent == {**client, "bootstrap_host": "127.0.0.1", "bootstrap_port": 8998, "bootstrap_room": room}
        assert fake.bodies[0] == {**sent, "stream": False}

    run(main())


def test_embeddings_of_a_disaggregated_model_skip_the_prefill_step(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill()
        app = gateway(tmp_path, await fake.start())
        try:
            _, sent = await send(app, {"model": "m", "input": LONG}, "/v1/embeddings")
        finally:
            await app.pd.close()
            await fake.stop()
        assert fake.bodies == [] and sent is None

    run(main())


def test_client_transfer_fields_never_reach_an_engine(tmp_path: Path) -> None:
    async def main() -> None:
        app = gateway(tmp_path, None)
        try:
            _, sent = await send(app, {"model": "m", "prompt": "short", "max_tokens": 2, "bootstrap_host": "evil",
                                       "kv_transfer_params": {"do_remote_prefill": True, "remote_host": "evil"}})
        finally:
            await app.pd.close()
        assert sent == {"model": "m", "prompt": "short", "max_tokens": 2}
        # a name spelled with a JSON escape is the same name once parsed
        escaped = b'{"model": "m", "prompt": "short", "kv_transfer\\u005fparams": {"remote_host": "evil"}}'
        _, sent = await send(app, escaped)
        assert sent == {"model": "m", "prompt": "short"}

    run(main())


def test_the_prefill_call_is_a_child_span_the_prefill_engine_continues(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from runtime_components.gateway.tracing import RequestTracer

    exporter = InMemorySpanExporter()
    tracer = RequestTracer("http://unused:4317", 1.0, exporter=exporter)

    async def main() -> None:
        fake = FakePrefill()
        app = gateway(tmp_path, await fake.start())
        app.core.tracer = app.pd._tracer = tracer
        try:
            await send(app, {"model": "m", "prompt": LONG, "max_tokens": 4})
        finally:
            await app.pd.close()
            await fake.stop()
        return fake

    fake = run(main())
    tracer.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    prefill, request = spans["gateway prefill"], spans["gateway completions"]
    assert prefill.parent is not None and prefill.parent.span_id == request.context.span_id
    assert prefill.context.trace_id == request.context.trace_id
    assert prefill.attributes["aibrix.pd.prefill.endpoint"] == f"127.0.0.1:{fake.port}"
    assert fake.traceparents == [f"00-{prefill.context.trace_id:032x}-{prefill.context.span_id:016x}-01"]


def test_the_gateway_sends_what_the_simulated_prefill_engine_understands() -> None:
    assert NIXL_PREFILL_PARAMS == prefill_request_params()


def test_bodies_are_pure_and_keep_the_clients_fields() -> None:
    client = {"model": "m", "messages": [], "max_tokens": 9, "max_completion_tokens": 9, "temperature": 0.0,
              "stream": True, "stream_options": {"include_usage": True}, "min_tokens": 3}
    prefill = vllm_prefill_body(client, nixl=False)
    assert prefill == {"model": "m", "messages": [], "max_tokens": 1, "max_completion_tokens": 1, "temperature": 0.0,
                       "stream": False}
    assert client["max_tokens"] == 9  # the input is not changed
    p, d = sglang_bodies({"model": "m", "prompt": "x", "stream": True, "stream_options": {}}, "10.0.0.5", 8998, 7)
    assert d == {"model": "m", "prompt": "x", "stream": True, "stream_options": {}, "bootstrap_host": "10.0.0.5",
                 "bootstrap_port": 8998, "bootstrap_room": 7}
    assert p == {"model": "m", "prompt": "x", "stream": False, "bootstrap_host": "10.0.0.5", "bootstrap_port": 8998,
                 "bootstrap_room": 7}


def test_static_discovery_keeps_prefill_pods_apart(tmp_path: Path) -> None:
    path = tmp_path / "eps.json"
    path.write_text(json.dumps([
        {"host": "127.0.0.1", "port": 9001, "model": "m", "index": 0, "pd_role": "prefill"},
        {"host": "127.0.0.1", "port": 9002, "model": "m", "index": 1, "pd_role": "decode"},
        {"host": "127.0.0.1", "port": 9003, "model": "m", "index": 2},
    ]))
    endpoints = load_endpoints_file(str(path), {"m"}, {"m"})
    assert [(e.address, e.model) for e in endpoints] == [
        ("127.0.0.1:9001", prefill_pool("m")), ("127.0.0.1:9002", "m"), ("127.0.0.1:9003", "m")]


@pytest.mark.parametrize("entry, message", [
    ("{address: '127.0.0.1:1', model: m, role: prefill}", 'role is prefill but model "m" has no disaggregation'),
    ("{address: '127.0.0.1:1', model: m, role: both}", "role must be prefill or decode, got 'both'"),
])
def test_bad_roles_are_refused_with_the_entry(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "eps.yaml"
    path.write_text(f"endpoints:\n- {entry}\n")
    with pytest.raises(EndpointsFileError) as exc:
        load_endpoints_file(str(path), {"m"})
    assert f"{path}: endpoints[0]: " in str(exc.value) and message in str(exc.value)


def test_kubernetes_discovery_watches_each_role() -> None:
    config = GatewayConfig.model_validate({"models": [
        {"name": "m", "selector": {"app": "m", "role": "decode"}, "port": 8000, "engine": "vllm",
         "disaggregation": {"transfer": "nixl", "prefillSelector": {"app": "m", "role": "prefill"}, "prefillPort": 8100}},
        {"name": "plain", "selector": {"app": "plain"}}]})
    specs = [(s.name, s.selector, s.port, s.engine) for s in role_specs(config.models)]
    assert specs == [("m", {"app": "m", "role": "decode"}, 8000, "vllm"), ("plain", {"app": "plain"}, 8000, None),
                     (prefill_pool("m"), {"app": "m", "role": "prefill"}, 8100, "vllm")]


@pytest.mark.parametrize("model, message", [
    ({"name": "m", "disaggregation": {"transfer": "mooncake"}}, "disaggregation.bootstrapPort is not set"),
    ({"name": "m", "engine": "sglang", "disaggregation": {"transfer": "nixl"}}, "bootstrapPort is not set"),
    ({"name": "m", "disaggregation": {"transfer": "nixl", "prefillRouting": {
        "policy": "prefix-cache-aware", "parameters": {"prefixCacheAware": {"index": "kv-events"}}}}},
     "kv-events prefix index is not supported for prefill pods"),
    ({"name": "m#prefill"}, 'must not end in "#prefill"'),
])
def test_configs_the_gateway_cannot_serve_are_refused_at_start(tmp_path: Path, model: dict, message: str) -> None:
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints: []\n")
    config = GatewayConfig.model_validate({"discovery": {"mode": "static", "endpointsFile": str(path)}, "models": [model]})
    with pytest.raises(StartupError) as exc:
        GatewayApp(config)
    assert message in str(exc.value)


@contextlib.asynccontextmanager
async def busy_decode_pair(tmp_path: Path, mode: str = "ok", **disaggregation: Any) -> AsyncIterator[tuple[GatewayApp, FakePrefill, str]]:
    """A gateway with one prefill pod (a FakePrefill) and a decode pod scraped as busy (6 running)."""
    fake = FakePrefill(mode)
    prefill = await fake.start()
    app = gateway(tmp_path, prefill, **disaggregation)
    app.table.record_sample(DECODE, EngineSample(running=6.0, waiting=0.0), time.monotonic())
    try:
        yield app, fake, prefill
    finally:
        await app.pd.close()
        await fake.stop()


def test_a_short_prompt_may_run_whole_on_an_idle_prefill_pod(tmp_path: Path) -> None:
    async def main() -> None:
        async with busy_decode_pair(tmp_path) as (app, fake, prefill):
            headers, sent = await send(app, {"model": "m", "prompt": "short", "max_tokens": 4})
        # routed like any request (Envoy sends it), not called as a prefill
        assert headers["x-gateway-destination-endpoint"] == prefill and fake.bodies == [] and sent is None
        assert metric(app, "aibrix_gateway_pd_requests_total", model="m", path="short_on_prefill_pod") == 1

    run(main())


@pytest.mark.parametrize("disaggregation", [{"shortPromptsOnPrefillPods": False},
                                            {"transfer": "mooncake", "bootstrapPort": 8998}])
def test_short_prompts_stay_on_decode_pods_when_turned_off_or_on_sglang(tmp_path: Path, disaggregation: dict) -> None:
    async def main() -> None:
        async with busy_decode_pair(tmp_path, **disaggregation) as (app, _, _):
            headers, _ = await send(app, {"model": "m", "prompt": "short", "max_tokens": 4})
        assert headers["x-gateway-destination-endpoint"] == DECODE
        assert metric(app, "aibrix_gateway_pd_requests_total", model="m", path="short") == 1

    run(main())


def test_long_prompts_never_run_whole_on_a_prefill_pod(tmp_path: Path) -> None:
    async def main() -> None:
        async with busy_decode_pair(tmp_path) as (app, fake, _):
            headers, _ = await send(app, {"model": "m", "prompt": LONG, "max_tokens": 4})
        assert headers["x-gateway-destination-endpoint"] == DECODE and len(fake.bodies) == 1

    run(main())


def test_while_a_prefill_call_is_in_flight_short_prompts_stay_on_decode_pods(tmp_path: Path) -> None:
    async def main() -> None:
        # the long prompt's prefill call hangs until its 0.3 s timeout
        async with busy_decode_pair(tmp_path, "slow") as (app, fake, prefill):
            long = asyncio.create_task(send(app, {"model": "m", "prompt": LONG, "max_tokens": 4}))
            while not fake.bodies:  # the prefill call has reached the prefill pod
                await asyncio.sleep(0.01)
            headers, _ = await send(app, {"model": "m", "prompt": "short", "max_tokens": 4})
            await long
            after, _ = await send(app, {"model": "m", "prompt": "short", "max_tokens": 4})
        # a long prefill runs on the prefill pod: a short prompt there would share its steps
        assert headers["x-gateway-destination-endpoint"] == DECODE
        assert after["x-gateway-destination-endpoint"] == prefill  # the call is over: spare again

    run(main())


def test_the_endpoint_gauge_counts_prefill_pods_apart(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakePrefill()
        app = gateway(tmp_path, await fake.start())
        try:
            app._update_endpoint_gauges()
        finally:
            await app.pd.close()
            await fake.stop()
        assert metric(app, "aibrix_gateway_endpoints", model="m", state="up") == 1
        assert metric(app, "aibrix_gateway_endpoints", model="m", state="prefill_up") == 1

    run(main())
