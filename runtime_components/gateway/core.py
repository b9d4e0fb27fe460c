"""The gateway's decisions, independent of the Envoy protocol.

``GatewayCore.admit`` takes one request (headers + body) through the fixed order

    auth (401) -> parse (400/404 path) -> model or adapter (404) -> rate limit (429) -> route (503)

and returns an :class:`Admission`: the chosen endpoint plus what finishing needs. Then
``finish`` settles it: usage into TPM and the token-bucket histogram, the router's
``on_finished`` hook, the in-flight count and the per-status counter. ``extproc`` translates
Envoy's messages into these calls; tests can drive the core directly.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aibrix_spec.components.gateway import GatewayConfig, GatewayModelSpec
from aibrix_spec.routing import RoutingSpec

from .endpoints import EndpointTable
from .errors import GatewayError, bad_request, model_not_found, no_endpoint
from .exact_tokens import ExactTokenizer
from .flow import FlowController, FlowMetrics, table_states
from .metrics import GatewayMetrics
from .openai_request import ParsedRequest, parse_request
from .policy import EndpointState, NoEndpointError, RequestOutcome, Router, RouteRequest, build_router
from .policy.pool import EndpointPool
from .policy.prefix import PrefixIndex, use_event_index
from .policy.state import RoutingState
from .ratelimit import RateLimiter
from .ratelimit.breaker import StoreUnavailable
from .routes import RouteTable
from .tracing import RequestTracer
from .usage import Usage
from .users import User, UserDirectory

__all__ = ["Admission", "GatewayCore", "POLICY_HEADER"]

log = logging.getLogger(__name__)

POLICY_HEADER = "x-routing-policy"
MAX_OVERRIDE_ROUTERS = 64  # routers built for x-routing-policy values, oldest dropped first


@dataclass
class Admission:
    """A routed request, until it finishes."""

    model: str
    adapter: str | None
    user: User
    parsed: ParsedRequest
    route_request: RouteRequest
    router: Router
    endpoint: EndpointState
    started: float
    fallbacks: tuple[str, ...] = ()
    served_by: str | None = None  # set when a retry moved the request to a fallback
    first_byte_at: float | None = None
    finished: bool = False
    status: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    #: the body to send instead of the client's (a weighted route names its target model in it)
    body: bytes | None = None
    span: Any = None  #: the request's tracing span (tracing on)
    traceparent: str | None = None  #: its W3C context, sent to the engine
    attempts: int = 1  #: Envoy's tries (more than 1: retried to a fallback)
    queued_s: float = 0.0  #: time held before routing (flow control)


def _with_fields(body: bytes, fields: Mapping[str, object]) -> bytes:
    """``body`` (a parsed-valid JSON object) with ``fields`` set, other keys in order."""
    document = json.loads(body)
    document.update(fields)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Accepted:
    """A request parsed and resolved, before it is routed."""

    user: User
    headers: Mapping[str, str]
    body: bytes
    parsed: ParsedRequest
    model: str
    adapter: str | None
    target: str | None  #: the model a weighted route picked (None: no route)
    fields: dict[str, object]  #: body fields the engine must see instead of the client's

    @property
    def cost(self) -> float:
        """What flow control charges: the prompt and the most the answer may take."""
        return self.parsed.prompt_tokens + (self.parsed.max_tokens or 0)


class GatewayCore:
    """Config, endpoint table, routers, users and limits of one gateway process."""

    def __init__(self, config: GatewayConfig, table: EndpointTable, users: UserDirectory,
                 limiter: RateLimiter, metrics: GatewayMetrics, state: RoutingState | None = None,
                 tracer: RequestTracer | None = None) -> None:
        self.config = config
        self.table = table
        self.users = users
        self.limiter = limiter
        self.metrics = metrics
        self._models: dict[str, GatewayModelSpec] = {m.name: m for m in config.models}
        self._adapters: dict[str, str] = {a: m.name for m in config.models for a in m.adapters}
        # One prefix index / session table per model, shared by its routers (and, with a
        # RoutingSync's state, by the other gateway processes).
        self.state = state if state is not None else RoutingState()
        self.routes = RouteTable(self.state)
        self.tracer = tracer
        self.flow = FlowController(config.flow_control, config.rate_limits.tiers, table_states(table))
        self.flow.metrics = FlowMetrics(metrics.registry, self.flow.snapshot)
        self._routers: dict[tuple[str, str], Router] = {}
        #: widens a model's pool for one request (the pd path: short prompts may run on prefill pods)
        self.widen_pool: Callable[[str, ParsedRequest, EndpointPool, float], EndpointPool] | None = None
        # kv-events index mode: one event-fed prefix index per model, shared by its routers
        self.event_indexes: dict[str, PrefixIndex] = {
            m.name: PrefixIndex(m.routing.parameters.prefix_cache_aware.max_index_blocks)
            for m in config.models if m.routing.parameters.prefix_cache_aware.index == "kv-events"
        }
        # the model's own tokenizer (tokenizerFile): prefix hashes that match the engines' KV events
        self.exact_tokenizers = {m.name: ExactTokenizer(m.tokenizer_file, where=f'model "{m.name}": tokenizerFile')
                                 for m in config.models if m.tokenizer_file}
        for i, model in enumerate(config.models):
            self._routers[(model.name, model.routing.policy)] = self._build(model.name, model.routing, config.seed * 1009 + i)

    def _build(self, model: str, routing: RoutingSpec, seed: int) -> Router:
        # The shortlist covers the chosen endpoint plus the fallbacks Envoy may retry on.
        router = build_router(routing, rng=random.Random(seed), shortlist_size=self.config.fallbacks + 1,
                              state=self.state, scope=model)
        if model in self.event_indexes:
            use_event_index(router.profile.plugins(), self.event_indexes[model])
        return router

    # -- lookups -------------------------------------------------------------------------
    def served_names(self) -> list[str]:
        return sorted({*self._models, *self._adapters, *self.routes.names()})

    def models_listing(self) -> dict[str, object]:
        """The OpenAI /v1/models answer: models, then adapters with their parent."""
        data: list[dict[str, object]] = [
            {"id": name, "object": "model", "owned_by": "aibrix", "root": name, "parent": None} for name in sorted(self._models)
        ]
        data += [
            {"id": a, "object": "model", "owned_by": "aibrix", "root": base, "parent": base}
            for a, base in sorted(self._adapters.items())
        ]
        data += [  # a route that shares a model's name is listed once, as the model
            {"id": r, "object": "model", "owned_by": "aibrix", "root": r, "parent": None}
            for r in self.routes.names() if r not in self._models
        ]
        return {"object": "list", "data": data}

    def resolve(self, name: str) -> tuple[str, str | None]:
        """Model or adapter name -> (base model, adapter or None); 404 when unknown."""
        if name in self._models:
            return name, None
        if name in self._adapters:
            return self._adapters[name], name
        raise model_not_found(name, self.served_names())

    def router_for(self, model: str, headers: Mapping[str, str]) -> Router:
        spec = self._models[model].routing
        override = headers.get(POLICY_HEADER)
        if not override or not spec.allow_header_override or override == spec.policy:
            return self._routers[(model, spec.policy)]
        key = (model, override)
        if key not in self._routers:
            try:
                routing = RoutingSpec(policy=override, parameters=spec.parameters, allow_header_override=True)
            except ValueError as exc:
                first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
                raise bad_request(f"The {POLICY_HEADER} header is not a valid policy: {first}") from None
            overrides = [k for k in self._routers if k[1] != self._models[k[0]].routing.policy]
            if len(overrides) >= MAX_OVERRIDE_ROUTERS:  # clients choose the strings: keep the cache bounded
                del self._routers[overrides[0]]
            self._routers[key] = self._build(model, routing, self.config.seed * 1009 + len(self._routers))
        return self._routers[key]

    def endpoint_removed(self, address: str) -> None:
        """Discovery dropped ``address``: every router forgets what it learned about it."""
        for router in self._routers.values():
            router.on_endpoint_removed(address)

    # -- the request path ----------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str]) -> User:
        return self.users.authenticate(headers.get("authorization"))

    async def admit(self, user: User, path: str, headers: Mapping[str, str], body: bytes) -> Admission:
        """Parse, resolve, rate-limit and route one request; raise GatewayError to refuse it."""
        request = self._accept(user, path, headers, body)
        await self._limit(user)
        router = self.router_for(request.model, headers)  # before hold: a refusal here holds nothing
        held_at = time.monotonic()
        band = self.flow.priority_of(user.tier, headers)
        with_room = await self.flow.hold(request.model, user.name, band, request.cost)
        if self.flow.enabled and self._models[request.model].engine_priority:
            request.fields["priority"] = self.flow.engine_priority(request.model, user.name, band)
        return self._route(request, router, with_room, held_at)

    def admits_now(self, user: User) -> bool:
        """Whether nothing can hold ``user``'s requests (no rate limits to count, flow control
        off), so :meth:`admit_now` may take them: the common case needs no task."""
        return not self.flow.enabled and not self.limiter.limits(user)

    def admit_now(self, user: User, path: str, headers: Mapping[str, str], body: bytes) -> Admission:
        """:meth:`admit` for a request nothing can hold (``admits_now``): the same steps, none
        of which waits."""
        request = self._accept(user, path, headers, body)
        router = self.router_for(request.model, headers)
        self.flow.priority_of(user.tier, headers)  # a bad priority header is refused either way
        return self._route(request, router, None, time.monotonic())

    def _accept(self, user: User, path: str, headers: Mapping[str, str], body: bytes) -> _Accepted:
        """Parse the body and resolve its model (a weighted route may pick another)."""
        parsed = parse_request(path, body)
        target = self.routes.pick(parsed.model, user, headers)
        if target is not None:
            self.metrics.route_requests.labels(parsed.model, target).inc()
        model, adapter = self.resolve(target if target is not None else parsed.model)
        # The engine knows only its own name: a routed request carries its target's.
        fields: dict[str, object] = {"model": target} if target is not None and target != parsed.model else {}
        return _Accepted(user, headers, body, parsed, model, adapter, target, fields)

    async def _limit(self, user: User) -> None:
        try:
            await self.limiter.admit(user)
        except GatewayError as exc:
            self.metrics.rate_limited.labels(user.tier or "none", exc.reason).inc()
            raise
        except StoreUnavailable:  # the breaker logs when it opens and closes, not per request
            self.metrics.rate_limit_errors.inc()
        except Exception as exc:  # the counter store (Redis) failed: serve rather than refuse everyone
            self.metrics.rate_limit_errors.inc()
            log.warning("rate limits not applied (fail open): %s: %s", exc.__class__.__name__, exc)

    def _route(self, accepted: _Accepted, router: Router, with_room: list[EndpointState] | None,
               held_at: float) -> Admission:
        """Pick the endpoint (among ``with_room`` when flow control held the request) and count
        the request in flight there."""
        model, parsed, user, headers = accepted.model, accepted.parsed, accepted.user, accepted.headers
        now = time.monotonic()
        pool, down = self.table.pool(model, now)
        if with_room is not None:  # flow control held the request until these engines had room
            pool = EndpointPool(with_room)
        elif self.widen_pool is not None:
            pool = self.widen_pool(model, parsed, pool, now)
        if not len(pool):
            reason = f"{down} endpoint(s) are failing" if down else "discovery found no ready pod"
            raise no_endpoint(model, reason)
        exact = self.exact_tokenizers.get(model) if parsed.kind == "completions" else None
        token_ids = parsed.prompt_token_ids if exact is None else parsed.prompt_token_ids.with_encoder(exact.ids)
        request = RouteRequest(
            model=model, adapter=accepted.adapter, token_ids=token_ids, headers=dict(headers),
            user=user.name, session_id=None,
        )
        started = time.perf_counter()
        try:
            decision = router.decide(request, pool)
        except NoEndpointError as exc:
            self.flow.wake(model, user.name)  # let through by flow control, never sent
            raise no_endpoint(parsed.model, exc.reason) from None
        self.metrics.observe_decision(router.policy, time.perf_counter() - started)
        if decision.prefix_match is not None:
            self.metrics.prefix_match.labels(model).observe(decision.prefix_match)
        router.on_routed(request, decision.endpoint)
        self.table.inflight_add(decision.endpoint.address, 1)
        self.flow.routed(decision.endpoint.address, parsed.prompt_tokens)
        fallbacks = self._fallbacks(decision.endpoint.address, decision.scores, pool)
        fields = accepted.fields
        admission = Admission(model, accepted.adapter, user, parsed, request, router, decision.endpoint,
                              started=time.monotonic(), fallbacks=fallbacks,
                              body=_with_fields(accepted.body, fields) if fields else None, queued_s=now - held_at)
        if self.tracer is not None:
            admission.span = self.tracer.start(f"gateway {parsed.kind}", headers, {
                "gen_ai.operation.name": parsed.kind, "gen_ai.request.model": parsed.model, "aibrix.model": model,
                "aibrix.adapter": accepted.adapter, "aibrix.route.target": accepted.target,
                "aibrix.user.tier": user.tier,
                "aibrix.routing.policy": router.policy, "aibrix.routing.endpoint": decision.endpoint.address,
                "aibrix.routing.prefix_match": decision.prefix_match, "aibrix.queue.seconds": admission.queued_s,
            })
            admission.traceparent = self.tracer.traceparent(admission.span)
        return admission

    def _fallbacks(self, chosen: str, scores: Mapping[str, float], pool: EndpointPool) -> tuple[str, ...]:
        """The next-best eligible endpoints (by the router's total score, then least loaded).

        ``scores`` holds every eligible endpoint, or the router's shortlist when it decided on
        one (sized to the fallback count: ``Router.shortlist_size``)."""
        count = self.config.fallbacks
        if count == 0:
            return ()
        get = pool.get
        # (-score, in flight, address) tuples sort as the order above, without a key function.
        eligible = [(-s, get(a).inflight, a) for a, s in scores.items() if a != chosen and a in pool]  # type: ignore[union-attr]
        eligible.sort()
        return tuple(entry[2] for entry in eligible[:count])

    def attempts_failed(self, admission: Admission, attempts: int) -> None:
        """Envoy needed ``attempts`` tries: the first ``attempts - 1`` endpoints failed to connect
        or reset. They leave the candidates; the request now belongs to the one that answered."""
        chain = (admission.endpoint.address, *admission.fallbacks)
        admission.attempts = attempts
        failed = chain[: max(0, min(attempts, len(chain)) - 1)]
        for address in failed:
            self.table.mark_down(address, f"Envoy retried a request away from {address}")
            self.metrics.upstream_failures.labels(admission.model).inc()
        if failed and attempts - 1 < len(chain):
            served = chain[attempts - 1]
            admission.router.on_finished(admission.route_request, admission.endpoint, RequestOutcome(success=False))
            self.table.inflight_add(admission.endpoint.address, -1)
            self.table.inflight_add(served, 1)
            admission.served_by = served

    def served_address(self, admission: Admission) -> str:
        return admission.served_by or admission.endpoint.address

    def upstream_failed(self, admission: Admission, status: int, attempts: int | None) -> None:
        """Envoy answered ``status`` itself, without an engine's response.

        A 503 means every attempt failed to connect or was reset: the ``attempts`` endpoints
        tried (all of them when Envoy does not say) leave the candidates now. Other local
        answers (504 route timeout, 413 ...) say nothing about the pod's health."""
        self.metrics.upstream_failures.labels(admission.model).inc()
        if status != 503:
            return
        chain = (admission.endpoint.address, *admission.fallbacks)
        for address in chain[: attempts or len(chain)]:
            self.table.mark_down(address, f"Envoy answered 503 after trying {address}")

    async def finish(self, admission: Admission, usage: Usage | None, success: bool, *,
                     observed: bool = True, weight: int = 1) -> None:
        """Settle a routed request exactly once (``settle``), and count its tokens against the
        user's TPM budget."""
        if not self.settle(admission, usage, success, observed=observed, weight=weight):
            return
        assert usage is not None
        try:
            await self.limiter.record_tokens(admission.user, usage.total)
        except StoreUnavailable:
            self.metrics.rate_limit_errors.inc()
        except Exception as exc:  # Redis down: these tokens go uncounted
            self.metrics.rate_limit_errors.inc()
            log.warning("tokens not counted (fail open): %s: %s", exc.__class__.__name__, exc)

    def settle(self, admission: Admission, usage: Usage | None, success: bool, *,
               observed: bool = True, weight: int = 1) -> bool:
        """Settle a routed request exactly once, all but counting its tokens in the limiter's
        store (which may be Redis, so ``finish`` awaits it); True when there are tokens to count.
        Without usage nothing waits: the ext_proc stream's end settles unread requests here.

        ``observed`` is False when the gateway did not read the response (Envoy skipped the
        response phases): its status is unknown and counted as "unobserved". ``weight`` is how
        many requests a sampled response stands for in the token-bucket histogram."""
        if admission.finished:
            return False
        admission.finished = True
        self.table.inflight_add(self.served_address(admission), -1)
        self.flow.wake(admission.model, admission.user.name)
        now = time.monotonic()
        ttft = admission.first_byte_at - admission.started if admission.first_byte_at is not None else None
        outcome = RequestOutcome(
            success=success,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            ttft_s=ttft, e2e_s=now - admission.started,
        )
        if admission.served_by is None:  # a retried request already reported its failed first choice
            admission.router.on_finished(admission.route_request, admission.endpoint, outcome)
        if not observed:
            status = "unobserved"
        else:
            status = str(admission.status) if admission.status else ("200" if success else "aborted")
        if admission.span is not None and self.tracer is not None:
            self.tracer.end(admission.span, {
                "http.response.status_code": admission.status or None, "aibrix.retries": admission.attempts - 1,
                "aibrix.routing.served_by": self.served_address(admission),
                "gen_ai.usage.input_tokens": usage.prompt_tokens if usage else None,
                "gen_ai.usage.output_tokens": usage.completion_tokens if usage else None,
            }, error=None if success else f"status {status}")
        self.metrics.count_request(admission.model, admission.router.policy, status)
        if usage is not None and success:
            self.metrics.observe_usage(admission.model, usage.prompt_tokens, usage.completion_tokens, weight)
            return True
        return False

    def refused(self, error: GatewayError, model: str | None) -> None:
        self.metrics.count_request(model or "unknown", "none", str(error.status))
