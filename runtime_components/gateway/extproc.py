"""The Envoy ext_proc gRPC service: one bidirectional stream per HTTP request.

Envoy's filter config (see ``compiler/render/envoy_bootstrap.py``) sends request headers and
the request body BUFFERED (one message) and skips the response phases, with
``allow_mode_override``. Per stream:

    request_headers  -> auth (401 immediate) or CONTINUE; GET /v1/models answered here.
                        When the response must be read (the user's tier has a tpm budget, a
                        workload sample is due, or ``responses.processAll``) the answer
                        carries ``mode_override``: response headers SEND, response body STREAMED
                        (Envoy honours an override only in the answer to request_headers)
    request_body     -> core.admit_now (answered at once) when nothing can hold the request,
                        else core.admit in a task (rate limits, flow control):
                        400/404/429/503 immediate; for a disaggregated model the
                        prefill step (pd/path.py: a call to a prefill pod, the decode body
                        rewritten; any failure decodes in place); then CONTINUE with header mutations
                        x-gateway-destination-endpoint, target-pod and the fallbacks
                        x-gateway-destination-fallback-k (overwriting any the client sent)
                        and clear_route_cache
    response_headers -> (read responses only) status; a 503 without x-envoy-upstream-service-time
                        is Envoy's own reply after connect failures or resets: the tried
                        endpoints leave the candidates; x-envoy-attempt-count > 1 means a retry
                        moved it to a fallback
    response_body    -> (read responses only) usage counted chunk by chunk; at end of stream
                        core.finish
    end of stream    -> an unread request is finished here: Envoy keeps the ext_proc stream
                        open until the HTTP stream ends (verified with real Envoy, see
                        tests/gateway/test_response_modes.py), so its in-flight slot is
                        released when the response is done

Header values arrive in ``raw_value`` (bytes) from Envoy >= 1.3x, in ``value`` from older ones.

Cost: the gRPC machinery (one HTTP/2 stream per request, one read and one write per message)
is most of the per-request CPU; the Python here is kept allocation-light on the hot path:
constant answers are built once, the body phase's answer is shared by the requests routed
alike (``RouteAnswers``), the remove-list of unused fallback slots is built once per
fallback count, response headers are scanned for the four names used instead of copied into
a dict, and a body that arrives in one message is not copied.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from aibrix_spec.components.gateway import EXT_PROC_RESPONSE_HEADERS

from .core import Admission, GatewayCore
from .errors import GatewayError, bad_request, internal_error, request_too_large
from .pd import PrefillDecode
from .usage import UsageCounter
from .users import User

__all__ = ["DESTINATION_HEADER", "EXT_PROC_PATH", "FALLBACK_HEADER_PREFIX", "TARGET_POD_HEADER", "ExtProcServicer",
           "ExtProcSession", "RouteAnswers"]

log = logging.getLogger(__name__)

#: The gRPC path of ext_proc's one method (the builtin HTTP/2 server routes on it).
EXT_PROC_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
TARGET_POD_HEADER = "target-pod"
FALLBACK_HEADER_PREFIX = "x-gateway-destination-fallback-"  # the Envoy bootstrap shifts these on retries
MAX_FALLBACK_HEADERS = 10
_ATTEMPT_COUNT_HEADER = "x-envoy-attempt-count"
_UPSTREAM_TIME_HEADER = "x-envoy-upstream-service-time"
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

_EOF = grpc.aio.EOF
_MODE = processing_mode_pb2.ProcessingMode
#: The override that turns the response phases on. Envoy replaces the whole remaining mode, so
#: the request body must be named again (without it Envoy would not send the body).
READ_RESPONSE_MODE = _MODE(request_header_mode=_MODE.SEND, request_body_mode=_MODE.BUFFERED,
                           response_header_mode=_MODE.SEND, response_body_mode=_MODE.STREAMED,
                           request_trailer_mode=_MODE.SKIP, response_trailer_mode=_MODE.SKIP)

_CONTINUE_REQUEST_HEADERS = pb.ProcessingResponse(request_headers=pb.HeadersResponse())
_CONTINUE_READING_RESPONSE = pb.ProcessingResponse(request_headers=pb.HeadersResponse(),
                                                   mode_override=READ_RESPONSE_MODE)
_CONTINUE_REQUEST_BODY = pb.ProcessingResponse(request_body=pb.BodyResponse())
_CONTINUE_RESPONSE_HEADERS = pb.ProcessingResponse(response_headers=pb.HeadersResponse())
_CONTINUE_RESPONSE_BODY = pb.ProcessingResponse(response_body=pb.BodyResponse())


def header_map(headers: pb.HttpHeaders) -> dict[str, str]:
    """Envoy's header list -> {lower-case name: value} (repeated names joined by ',')."""
    out: dict[str, str] = {}
    for h in headers.headers.headers:
        raw = h.raw_value  # each attribute read builds a new object: read once
        value = raw.decode("latin-1") if raw else h.value
        key = h.key.lower()
        if key in out:
            value = f"{out[key]},{value}"
        out[key] = value
    return out


_RESPONSE_HEADERS_USED = frozenset(EXT_PROC_RESPONSE_HEADERS)  # the contract Envoy's forward_rules follow


def _response_header_values(headers: pb.HttpHeaders) -> dict[str, str]:
    """Only the response headers the gateway reads (first value of each); the rest are skipped."""
    out: dict[str, str] = {}
    for h in headers.headers.headers:
        key = h.key.lower()
        if key in _RESPONSE_HEADERS_USED and key not in out:
            out[key] = h.raw_value.decode("latin-1") if h.raw_value else h.value
    return out


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, raw_value=value.encode("latin-1")),
                                      append_action=_OVERWRITE)


def immediate(status: int, body: bytes, headers: dict[str, str], details: str) -> pb.ProcessingResponse:
    """An Envoy immediate response with a JSON body."""
    mutation = pb.HeaderMutation(set_headers=[_header("content-type", "application/json"),
                                              *(_header(k, v) for k, v in headers.items())])
    return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=status), headers=mutation, body=body, details=details))


def error_response(error: GatewayError) -> pb.ProcessingResponse:
    return immediate(error.status, error.body(), error.headers, f"aibrix_gateway_{error.code}")


#: ``_UNUSED_FALLBACKS[n]``: the fallback header names to remove when ``n`` fallbacks are set.
_UNUSED_FALLBACKS = tuple(
    tuple(f"{FALLBACK_HEADER_PREFIX}{k}" for k in range(used + 1, MAX_FALLBACK_HEADERS + 1))
    for used in range(MAX_FALLBACK_HEADERS + 1)
)


def route_response(admission: Admission) -> pb.ProcessingResponse:
    """CONTINUE the buffered body, telling Envoy where to send it (and where to retry).

    Unused fallback slots are removed so a client cannot steer retries with its own headers."""
    chosen = admission.fallbacks[:MAX_FALLBACK_HEADERS]
    address = admission.endpoint.address
    set_headers = [_header(DESTINATION_HEADER, address), _header(TARGET_POD_HEADER, address)]
    set_headers += [_header(f"{FALLBACK_HEADER_PREFIX}{k}", a) for k, a in enumerate(chosen, start=1)]
    if admission.traceparent is not None:  # the engine's spans continue the gateway's trace
        set_headers.append(_header("traceparent", admission.traceparent))
    body = None
    if admission.body is not None:
        # BUFFERED body with headers SENT: Envoy keeps content-length, so it must match the new body.
        set_headers.append(_header("content-length", str(len(admission.body))))
        body = pb.BodyMutation(body=admission.body)
    mutation = pb.HeaderMutation(set_headers=set_headers, remove_headers=_UNUSED_FALLBACKS[len(chosen)])
    common = pb.CommonResponse(header_mutation=mutation, body_mutation=body, clear_route_cache=True)
    return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))


#: Route answers kept by (destination, fallbacks); cleared when full, so memory stays bounded
#: however large the fleet.
ROUTE_ANSWERS_MAX = 4096


class RouteAnswers:
    """The body phase's answers for requests that keep their body and carry no trace context.

    With a fixed fleet the same few (destination, fallbacks) pairs recur, and building the
    answer (five protobuf messages, a header per fallback) is the largest part of the body
    phase's own Python after parsing; answers are immutable once built, so one serves every
    stream that routes alike."""

    __slots__ = ("_answers",)

    def __init__(self) -> None:
        self._answers: dict[tuple[str, tuple[str, ...]], pb.ProcessingResponse] = {}

    def __call__(self, admission: Admission) -> pb.ProcessingResponse:
        if admission.body is not None or admission.traceparent is not None:
            return route_response(admission)
        key = (admission.endpoint.address, admission.fallbacks)
        answer = self._answers.get(key)
        if answer is None:
            if len(self._answers) >= ROUTE_ANSWERS_MAX:
                self._answers.clear()
            answer = self._answers[key] = route_response(admission)
        return answer


class _Stream:
    """What one HTTP request has shown so far."""

    __slots__ = ("path", "method", "headers", "user", "body", "admission", "content_type", "usage", "model",
                 "read_response", "sampled", "weight")

    def __init__(self) -> None:
        self.path = ""
        self.method = ""
        self.headers: dict[str, str] = {}
        self.user: User | None = None
        self.body = bytearray()
        self.admission: Admission | None = None
        self.content_type = ""
        self.usage: UsageCounter | None = None
        self.model: str | None = None
        self.read_response = False  # Envoy sends the response phases
        self.sampled = False  # read as a workload sample (not for TPM): carries ``weight``
        self.weight = 1


class ExtProcSession:
    """One ext_proc stream, for a server that drives it (``h2_server.SessionMethod``) or for
    ``Process``: ``on_message`` answers a message with a response, None, or a coroutine of one
    (the body phase: admission may wait); ``on_end`` settles the request once the stream ends."""

    __slots__ = ("_servicer", "_stream")

    def __init__(self, servicer: ExtProcServicer) -> None:
        self._servicer = servicer
        self._stream = _Stream()

    def on_message(self, message: pb.ProcessingRequest) -> Any:
        return self._servicer._on_message(self._stream, message)

    def on_end(self) -> None:
        self._servicer._on_end(self._stream)


class WorkloadSampler:
    """Chooses which responses to read for the token-bucket histogram, evenly spaced in time.

    Soundness: the choice depends only on the clock, never on the request (its user, prompt
    or model), so the sampled responses are a systematic sample of the traffic; each sample
    is weighted by the unread requests of its model since that model's previous sample, so
    the histogram's totals stay exact counts and its cells are unbiased estimates while the
    mix does not change faster than the samples come. At rates below ``per_s`` every
    response is read. A sample whose response fails hands its weight to the next one."""

    __slots__ = ("_interval", "_next_at", "_pending")

    def __init__(self, per_s: float) -> None:
        self._interval = 1.0 / per_s if per_s > 0 else None
        self._next_at = 0.0
        self._pending: dict[str, int] = {}

    def due(self) -> bool:
        if self._interval is None:
            return False
        now = time.monotonic()
        if now < self._next_at:
            return False
        self._next_at = max(self._next_at + self._interval, now)
        return True

    def skipped(self, model: str) -> None:
        """An unread request of ``model``: the next sample of that model stands for it."""
        self._pending[model] = self._pending.get(model, 0) + 1

    def take(self, model: str) -> int:
        """The weight of a sample of ``model``: itself plus the unread requests before it."""
        return self._pending.pop(model, 0) + 1

    def give_back(self, model: str, weight: int) -> None:
        self._pending[model] = self._pending.get(model, 0) + weight


class ExtProcServicer(pb_grpc.ExternalProcessorServicer):
    """Translates Envoy's ext_proc messages into :class:`GatewayCore` calls."""

    def __init__(self, core: GatewayCore, pd: PrefillDecode | None = None) -> None:
        self._core = core
        self._pd = pd
        self._max_body = core.config.max_request_body_bytes
        self._read_all = core.config.responses.process_all
        self.sampler = WorkloadSampler(core.config.responses.workload_samples_per_s)
        self._route = RouteAnswers()

    async def Process(  # noqa: N802 (gRPC name)
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> None:
        # gRPC's reader/writer API, not an async generator over ``request_iterator``: the
        # generator form wraps every message in more asyncio machinery (docs/gateway.md,
        # "Per-request cost"). The builtin server drives an ``ExtProcSession`` itself.
        session = ExtProcSession(self)
        read, write = context.read, context.write
        try:
            while True:
                message = await read()
                if message is _EOF:
                    return
                answer = session.on_message(message)
                if answer is None:
                    continue
                if not isinstance(answer, pb.ProcessingResponse):
                    answer = await answer
                await write(answer)
        finally:
            session.on_end()

    def _on_message(self, stream: _Stream, message: pb.ProcessingRequest) -> Any:
        """The answer to one message: a response, None (no answer), or a coroutine of one."""
        kind = message.WhichOneof("request")
        if kind == "request_headers":
            return self._on_request_headers(stream, message.request_headers)
        if kind == "request_body":
            return self._on_request_body(stream, message.request_body)
        if kind == "response_headers":
            return self._on_response_headers(stream, message.response_headers)
        if kind == "response_body":
            return self._on_response_body(stream, message.response_body)
        if kind == "request_trailers":
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        if kind == "response_trailers":
            return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())
        return None

    def _on_end(self, stream: _Stream) -> None:
        """The stream ended: settle a request not settled yet (no usage, so nothing waits)."""
        admission = stream.admission
        if admission is not None and not admission.finished:
            if stream.read_response:
                # The client went away or Envoy reset the stream before the response ended.
                if stream.sampled:
                    self.sampler.give_back(admission.model, stream.weight)
                self._core.settle(admission, None, success=False)
            else:
                # Unread: the stream ends with the HTTP stream, response done or abandoned.
                self.sampler.skipped(admission.model)
                self._core.settle(admission, None, success=True, observed=False)

    def _refuse(self, stream: _Stream, error: GatewayError) -> pb.ProcessingResponse:
        self._core.refused(error, stream.model)
        return error_response(error)

    def _on_request_headers(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        stream.headers = header_map(headers)
        stream.path = stream.headers.get(":path", "")
        stream.method = stream.headers.get(":method", "")
        try:
            stream.user = user = self._core.authenticate(stream.headers)
            if headers.end_of_stream:
                route = stream.path.split("?", 1)[0].rstrip("/")
                if stream.method == "GET" and route == "/v1/models":
                    body = json.dumps(self._core.models_listing()).encode()
                    return immediate(200, body, {}, "aibrix_gateway_models")
                raise bad_request(f"{stream.method} {route or '/'} has no body; inference requests are POSTs with a JSON body")
        except GatewayError as error:
            return self._refuse(stream, error)
        if self._read_all or self._core.limiter.counts_tokens(user):
            stream.read_response = True
        elif self.sampler.due():
            stream.read_response = stream.sampled = True
        else:
            return _CONTINUE_REQUEST_HEADERS
        return _CONTINUE_READING_RESPONSE

    def _on_request_body(self, stream: _Stream, body: pb.HttpBody) -> Any:
        """The answer to the body, or a coroutine of it when admission may wait (rate limits,
        flow control) or the model is disaggregated (the prefill call)."""
        size = len(stream.body) + len(body.body)
        if size > self._max_body:  # Envoy's buffer is set to the same limit; this guards other set-ups
            stream.body = bytearray()
            return self._refuse(stream, request_too_large(size, self._max_body))
        if not body.end_of_stream:
            stream.body += body.body
            return _CONTINUE_REQUEST_BODY
        # BUFFERED mode delivers the whole body in one message: use it without copying.
        whole = bytes(stream.body) + body.body if stream.body else body.body
        stream.body = bytearray()
        user = stream.user
        assert user is not None
        if not self._core.admits_now(user):
            return self._admit_later(stream, user, whole)
        try:
            admission = self._core.admit_now(user, stream.path, stream.headers, whole)
        except Exception as exc:  # _not_admitted tells a refusal from a bug
            return self._not_admitted(stream, exc)
        return self._after_admission(stream, admission, whole)

    async def _admit_later(self, stream: _Stream, user: User, whole: bytes) -> pb.ProcessingResponse:
        try:
            admission = await self._core.admit(user, stream.path, stream.headers, whole)
        except Exception as exc:  # as above
            return self._not_admitted(stream, exc)
        answer = self._after_admission(stream, admission, whole)
        return answer if isinstance(answer, pb.ProcessingResponse) else await answer

    def _not_admitted(self, stream: _Stream, exc: Exception) -> pb.ProcessingResponse:
        if isinstance(exc, GatewayError):
            return self._refuse(stream, exc)
        # a bug: the client still gets a JSON answer, the log the traceback
        log.error("admitting a request to %s failed", stream.path, exc_info=exc)
        return self._refuse(stream, internal_error("admitting the request"))

    def _after_admission(self, stream: _Stream, admission: Admission, whole: bytes) -> Any:
        """The route answer, or a coroutine of it for a disaggregated model (the prefill call
        first). The stream owns the admission from here on: its end settles it, even when the
        prefill call is cut short or its task is closed before it starts."""
        stream.admission, stream.model = admission, admission.model
        if self._pd is not None and self._pd.disaggregated(admission.model):
            return self._prefill_first(stream, admission, whole)
        return self._admitted(stream, admission)

    async def _prefill_first(self, stream: _Stream, admission: Admission, whole: bytes) -> pb.ProcessingResponse:
        # the stream is held while the prefill pod works (docs/routing.md, "Prefill/decode")
        assert self._pd is not None
        await self._pd.prepare(admission, stream.path.split("?", 1)[0], whole)
        return self._admitted(stream, admission)

    def _admitted(self, stream: _Stream, admission: Admission) -> pb.ProcessingResponse:
        if stream.read_response:
            stream.usage = UsageCounter(admission.parsed.prompt_tokens)
            if stream.sampled:
                stream.weight = self.sampler.take(admission.model)
        return self._route(admission)

    async def _on_response_headers(self, stream: _Stream, headers: pb.HttpHeaders) -> pb.ProcessingResponse:
        admission = stream.admission
        if admission is None:
            return _CONTINUE_RESPONSE_HEADERS
        if not stream.read_response:  # an Envoy that sends responses regardless (no mode override)
            stream.read_response = True
            stream.usage = UsageCounter(admission.parsed.prompt_tokens)
        values = _response_header_values(headers)
        status_text = values.get(":status", "")
        status = int(status_text) if status_text.isdigit() else 0
        admission.status = status
        stream.content_type = values.get("content-type", "")
        attempts_text = values.get(_ATTEMPT_COUNT_HEADER, "")
        attempts = int(attempts_text) if attempts_text.isdigit() else None
        if status >= 500 and _UPSTREAM_TIME_HEADER not in values:
            self._core.upstream_failed(admission, status, attempts)
        elif attempts is not None and attempts > 1:
            self._core.attempts_failed(admission, attempts)
        if headers.end_of_stream:
            if stream.sampled:  # no body, no usage: the next sample carries the weight
                self.sampler.give_back(admission.model, stream.weight)
            await self._core.finish(admission, None, success=status < 500)
        return _CONTINUE_RESPONSE_HEADERS

    async def _on_response_body(self, stream: _Stream, body: pb.HttpBody) -> pb.ProcessingResponse:
        admission, usage = stream.admission, stream.usage
        if admission is None or usage is None:
            return _CONTINUE_RESPONSE_BODY
        if admission.first_byte_at is None and body.body:
            admission.first_byte_at = time.monotonic()
        if admission.status < 400:
            usage.feed(body.body, stream.content_type)
        if body.end_of_stream:
            ok = admission.status < 400
            if stream.sampled and not ok:
                self.sampler.give_back(admission.model, stream.weight)
            await self._core.finish(admission, usage.result() if ok else None, success=admission.status < 500,
                                    weight=stream.weight)
        return _CONTINUE_RESPONSE_BODY
