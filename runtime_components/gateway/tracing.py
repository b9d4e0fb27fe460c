"""One OpenTelemetry span per routed request, exported over OTLP, with W3C context to the engine.

Where it sits: ``GatewayCore.admit`` starts the span once the request is routed (its parent is
the client's ``traceparent`` when there is one), ``route_response`` sends the span's context to
the engine in ``traceparent`` (vLLM started with ``--otlp-traces-endpoint`` continues the
trace), and ``GatewayCore.finish`` ends it with the outcome. Sampling is parent-based: a
client's sampled flag is followed, otherwise ``samplingRatio`` of new traces are kept; an
unsampled request costs a sampling decision and no export. Spans leave in batches from a
background thread (the SDK's BatchSpanProcessor), never on the request path.

Attributes (OpenTelemetry GenAI names where they exist, ``aibrix.*`` for the rest):
``gen_ai.operation.name``, ``gen_ai.request.model`` (what the client asked for, a route
included), ``aibrix.model`` (the base model served), ``aibrix.adapter``,
``aibrix.route.target``, ``aibrix.user.tier``, ``aibrix.routing.policy``,
``aibrix.routing.endpoint``, ``aibrix.routing.prefix_match``, ``aibrix.queue.seconds``,
``aibrix.retries``, ``http.response.status_code``, ``gen_ai.usage.input_tokens`` and
``gen_ai.usage.output_tokens`` when the response was read.

A disaggregated request's prefill call (``pd/path.py``) is a CLIENT child span ``gateway
prefill`` with ``aibrix.pd.prefill.endpoint``, ``aibrix.pd.path`` and, when it failed,
``aibrix.pd.fallback.reason``; the prefill engine continues it through its own ``traceparent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RequestTracer"]


class RequestTracer:
    """The gateway's tracer: starts, annotates and ends request spans (opentelemetry-sdk)."""

    def __init__(self, endpoint: str, sampling_ratio: float, *, service_name: str = "aibrix-gateway",
                 exporter: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                        sampler=ParentBasedTraceIdRatio(sampling_ratio))
        self._provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        self._tracer = self._provider.get_tracer("aibrix.gateway")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]) -> Any:
        """A span for one request, child of the client's ``traceparent`` when it sent one."""
        from opentelemetry.trace import SpanKind

        context = self._propagator.extract(headers) if "traceparent" in headers else None
        return self._tracer.start_span(name, context=context, kind=SpanKind.SERVER,
                                       attributes={k: v for k, v in attributes.items() if v is not None})

    def child(self, parent: Any, name: str, attributes: Mapping[str, Any]) -> Any:
        """A CLIENT span under ``parent`` (a call the gateway itself makes, e.g. a prefill)."""
        from opentelemetry.trace import SpanKind, set_span_in_context

        return self._tracer.start_span(name, context=set_span_in_context(parent), kind=SpanKind.CLIENT,
                                       attributes={k: v for k, v in attributes.items() if v is not None})

    def traceparent(self, span: Any) -> str | None:
        """The W3C header value that makes the engine's spans children of ``span`` (None: unsampled
        and not asked for by the client, so nothing to continue)."""
        context = span.get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"

    def end(self, span: Any, attributes: Mapping[str, Any], *, error: str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if span.is_recording():
            span.set_attributes({k: v for k, v in attributes.items() if v is not None})
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporter thread."""
        self._provider.shutdown()
