"""The prefill step of a disaggregated model's requests, run inside the ext_proc body phase.

``GatewayCore.admit`` has already authenticated, rate-limited, held (flow control, on the
decode pool) and routed the request to a decode pod. :meth:`PrefillDecode.prepare` then:

- prompt shorter than ``minPromptTokens``: nothing (path ``short``: decoded in place);
- vLLM: picks a prefill pod with the model's ``prefillRouting`` (its own prefix index, its
  own in-flight counts), calls it (aiohttp, ``prefillTimeoutS``) for one token, and sets the
  decode body to the client's with the ``kv_transfer_params`` the prefill pod answered (NIXL;
  with the KV pool the body is unchanged: the decode pod finds the blocks in the pool);
- SGLang: picks a prefill pod, fires the prefill request without waiting for it and sets the
  decode body, both carrying the same ``bootstrap_room`` (``bodies.sglang_bodies``).

Whatever fails (no prefill pod, timeout, refused connection, non-200, an answer without
parameters, a bug) leaves the decode request as the client sent it: decoded in place, path
``fallback``, reason counted. A request is never refused here. Why this step lives inside
ext_proc, and what it costs: docs/routing.md, "Prefill/decode".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import secrets
import time
from typing import Any

import aiohttp

from aibrix_spec.components.gateway import DisaggregationConfig, GatewayConfig, GatewayModelSpec

from ..core import Admission
from ..endpoints import EndpointTable
from ..metrics import GatewayMetrics
from ..openai_request import ParsedRequest
from ..policy import NoEndpointError, RequestOutcome, Router, RouteRequest, build_router
from ..policy.pool import EndpointPool
from ..policy.state import RoutingState
from ..policy.types import endpoint_load
from ..tracing import RequestTracer
from .bodies import (
    CLIENT_TRANSFER_FIELDS,
    decode_body,
    dumps,
    sglang_bodies,
    vllm_prefill_body,
    without_client_transfer,
)
from .roles import PdConfigError, check_names, prefill_pool

__all__ = ["PdConfigError", "PrefillDecode", "PrefillFailed"]

log = logging.getLogger(__name__)

_TRANSFER_FIELD_BYTES = tuple(f.encode() for f in CLIENT_TRANSFER_FIELDS)


class PrefillFailed(Exception):
    """The prefill step did not produce what the decode pod needs; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _is_sglang(model: GatewayModelSpec, pd: DisaggregationConfig) -> bool:
    return pd.transfer == "mooncake" or model.engine == "sglang"


class PrefillDecode:
    """Prefill routers, the HTTP client and the metrics of every disaggregated model."""

    def __init__(self, config: GatewayConfig, table: EndpointTable, metrics: GatewayMetrics,
                 state: RoutingState | None = None, tracer: RequestTracer | None = None) -> None:
        check_names(config.models)
        self._table = table
        self._metrics = metrics
        self._tracer = tracer
        self._models: dict[str, GatewayModelSpec] = {}
        self._routers: dict[str, Router] = {}
        for i, model in enumerate(config.models):
            pd = model.disaggregation
            if pd is None:
                continue
            where = f'model "{model.name}": disaggregation'
            if pd.prefill_routing.parameters.prefix_cache_aware.index == "kv-events":
                raise PdConfigError(f"{where}.prefillRouting: the kv-events prefix index is not supported for prefill "
                                    "pods; use the routed index (the gateway learns what it sends them)")
            if _is_sglang(model, pd) and pd.bootstrap_port is None:
                raise PdConfigError(f"{where}.bootstrapPort is not set; SGLang pairs need the prefill pods' "
                                    "--disaggregation-bootstrap-port")
            self._models[model.name] = model
            # one pick and no fallbacks: a failed prefill is decoded in place, not retried
            self._routers[model.name] = build_router(
                pd.prefill_routing, rng=random.Random(config.seed * 1009 + 7919 + i), shortlist_size=1,
                state=state, scope=prefill_pool(model.name))
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()  # SGLang prefill calls nobody awaits
        self._calls: dict[str, int] = {}  # model -> this process's prefill calls in flight

    def disaggregated(self, model: str) -> bool:
        return model in self._models

    def short_pool(self, model: str, parsed: ParsedRequest, pool: EndpointPool, now: float) -> EndpointPool:
        """The pool a request of ``model`` is routed in: for a short prompt of a vLLM pair
        (``shortPromptsOnPrefillPods``) while none of the model's prefill calls is in flight, the
        decode pods plus every prefill pod less loaded than all of them (prefill pods are whole
        engines). So short-only traffic spreads over every GPU of the model, while a short
        prompt never shares a prefill pod's steps with a long prefill it could have avoided
        (measured in benchmarks.pd: without that condition, short prompts in mixed traffic
        paid twice the TTFT). Anything else: ``pool`` itself."""
        spec = self._models.get(model)
        pd = spec.disaggregation if spec is not None else None
        if (spec is None or pd is None or not pd.short_prompts_on_prefill_pods or _is_sglang(spec, pd)
                or parsed.kind == "embeddings" or parsed.prompt_tokens >= pd.min_prompt_tokens
                or self._calls.get(model, 0)):
            return pool
        prefill, _ = self._table.pool(prefill_pool(model), now)
        # only prefill pods less loaded than every decode pod: ties and busy prefill pods leave
        # the request on the decode pods, whose work it is
        bound = pool.min_load() if len(pool) else float("inf")
        spare = [s for s in prefill if endpoint_load(s) < bound]
        if not spare:
            return pool
        # the model-match filter reads each state's model: prefill pods serve the same model
        return EndpointPool([*pool, *(dataclasses.replace(s, model=model if s.model else "") for s in spare)])

    def endpoint_removed(self, address: str) -> None:
        for router in self._routers.values():
            router.on_endpoint_removed(address)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on the event loop that serves the requests
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=True)
        return self._session

    # -- the request path --------------------------------------------------------------------
    async def prepare(self, admission: Admission, path: str, body: bytes) -> None:
        """Run the prefill step of one admitted request of a disaggregated model (never raises
        but for cancellation: the client went away)."""
        model = self._models[admission.model]
        pd = model.disaggregation
        assert pd is not None
        raw = admission.body if admission.body is not None else body
        document: dict[str, Any] | None = None
        # a substring test spares most parses; an escaped name ("kv\\u005f...") is parsed to be sure
        if b"\\u" in raw or any(field in raw for field in _TRANSFER_FIELD_BYTES):
            document = json.loads(raw)
            cleaned = without_client_transfer(document)
            if cleaned is not None:  # only the gateway says where KV comes from
                document = cleaned
                admission.body = dumps(document)
        if admission.parsed.kind == "embeddings":  # nothing to decode: the pod computes it whole
            return
        if admission.parsed.prompt_tokens < pd.min_prompt_tokens:
            on_prefill = admission.endpoint.address in self._table.pool(prefill_pool(model.name), time.monotonic())[0]
            path_label = "short_on_prefill_pod" if on_prefill else "short"
            self._metrics.pd_requests.labels(model.name, path_label).inc()
            admission.extra["pd"] = path_label
            return
        if document is None:
            document = json.loads(raw)
        try:
            decode = await self._prefill(admission, model, pd, path, document)
        except PrefillFailed as failed:
            self._fallback(admission, failed.reason, str(failed))
            return
        except Exception as exc:  # a bug must not lose the request: decode it in place
            log.exception("prefill step of a %s request failed", model.name)
            self._fallback(admission, "error", f"{exc.__class__.__name__}: {exc}")
            return
        if decode is not None:
            admission.body = decode
        self._metrics.pd_requests.labels(model.name, "disaggregated").inc()
        admission.extra["pd"] = "disaggregated"

    def _fallback(self, admission: Admission, reason: str, detail: str) -> None:
        log.debug("decoding a %s request in place: %s", admission.model, detail)
        self._metrics.pd_requests.labels(admission.model, "fallback").inc()
        self._metrics.pd_fallbacks.labels(admission.model, reason).inc()
        admission.extra["pd"] = "fallback"
        admission.extra["pd_fallback"] = reason

    async def _prefill(self, admission: Admission, model: GatewayModelSpec, pd: DisaggregationConfig, path: str,
                       document: dict[str, Any]) -> bytes | None:
        """The decode body after a successful prefill step (None: the body as it is); raises
        PrefillFailed otherwise."""
        key = prefill_pool(model.name)
        pool, down = self._table.pool(key, time.monotonic())
        if not len(pool):
            raise PrefillFailed("no_prefill_pod", f"{down} prefill endpoint(s) failing" if down else "no prefill pod ready")
        router = self._routers[model.name]
        # the prefill pool's own scope; fresh memo space (the decode decision's is not this one's)
        request = dataclasses.replace(admission.route_request, model=key, scratch={})
        try:
            endpoint = router.decide(request, pool).endpoint
        except NoEndpointError as exc:
            raise PrefillFailed("no_prefill_pod", exc.reason) from None
        if _is_sglang(model, pd):
            host = endpoint.address.rpartition(":")[0]
            assert pd.bootstrap_port is not None
            prefill, decode = sglang_bodies(document, host, pd.bootstrap_port, secrets.randbits(63))
            # SGLang pairs the two by room: the prefill runs while the decode pod waits for it
            call = self._call(admission, model.name, router, request, endpoint, path, prefill, pd)
            task = asyncio.create_task(self._unawaited(call, model.name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return dumps(decode)
        answer = await self._call(admission, model.name, router, request, endpoint, path,
                                  vllm_prefill_body(document, nixl=pd.transfer == "nixl"), pd)
        if pd.transfer != "nixl":
            return None  # the KV pool: the decode pod reads the blocks the prefill pod wrote
        params = answer.get("kv_transfer_params") if isinstance(answer, dict) else None
        if not isinstance(params, dict) or not params.get("do_remote_prefill"):
            raise PrefillFailed("bad_answer", f"{endpoint.address} answered without kv_transfer_params naming a remote prefill")
        return dumps(decode_body(document, params))

    @staticmethod
    async def _unawaited(call: Any, model: str) -> None:
        """An SGLang prefill call: the decode was sent already, so a failure is only logged
        (the decode pod times out its bootstrap room and answers the client with an error)."""
        try:
            await call
        except PrefillFailed as failed:
            log.warning("SGLang prefill of a %s request failed (%s): %s", model, failed.reason, failed)
        except Exception:
            log.exception("SGLang prefill of a %s request failed", model)

    async def _call(self, admission: Admission, model: str, router: Router, request: RouteRequest,
                    endpoint: Any, path: str, body: dict[str, Any], pd: DisaggregationConfig) -> Any:
        """POST the prefill body to ``endpoint``; its JSON answer, or PrefillFailed."""
        address = endpoint.address
        router.on_routed(request, endpoint)
        self._table.inflight_add(address, 1)
        self._calls[model] = self._calls.get(model, 0) + 1
        span = None
        headers = {"content-type": "application/json"}
        request_id = request.headers.get("x-request-id")
        if request_id:  # both halves under one id, as vLLM's own P/D proxy sends them
            headers["x-request-id"] = request_id
        if self._tracer is not None and admission.span is not None:
            span = self._tracer.child(admission.span, "gateway prefill", {"aibrix.pd.prefill.endpoint": address})
            traceparent = self._tracer.traceparent(span)
            if traceparent is not None:
                headers["traceparent"] = traceparent
        started = time.monotonic()
        success, reason = False, "error"
        try:
            timeout = aiohttp.ClientTimeout(total=pd.prefill_timeout_s)
            try:
                async with self._client().post(f"http://{address}{path}", data=dumps(body), headers=headers,
                                               timeout=timeout) as resp:
                    if resp.status != 200:
                        reason = "status"
                        raise PrefillFailed(reason, f"{address} answered {resp.status}")
                    try:
                        answer = await resp.json(content_type=None)
                    except ValueError:
                        reason = "bad_answer"
                        raise PrefillFailed(reason, f"{address} answered a body that is not JSON") from None
            except TimeoutError:
                reason = "timeout"
                raise PrefillFailed(reason, f"{address} did not answer within {pd.prefill_timeout_s:g}s") from None
            except (aiohttp.ClientConnectionError, OSError) as exc:
                reason = "connect_error"
                # like a failed scrape: out of the candidates until a scrape succeeds again
                self._table.mark_down(address, f"prefill call failed: {exc.__class__.__name__}")
                raise PrefillFailed(reason, f"{address}: {exc.__class__.__name__}: {exc}") from None
            except aiohttp.ClientError as exc:
                reason = "bad_answer"
                raise PrefillFailed(reason, f"{address}: {exc.__class__.__name__}: {exc}") from None
            success = True
            return answer
        finally:
            elapsed = time.monotonic() - started
            self._metrics.pd_prefill_seconds.labels(model).observe(elapsed)
            self._table.inflight_add(address, -1)
            self._calls[model] -= 1
            router.on_finished(request, endpoint, RequestOutcome(success=success, e2e_s=elapsed))
            if span is not None and self._tracer is not None:
                self._tracer.end(span, {"aibrix.pd.fallback.reason": None if success else reason},
                                 error=None if success else reason)
