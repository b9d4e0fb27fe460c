"""Discrete-event simulation of many ``EngineCore`` instances behind a routing callback.

Where it sits: benchmarks (routing, KV cache, autoscaling, GPU mix) drive large sweeps
through this instead of HTTP. Simulated time only: a run of hours takes seconds.

Events, processed in time order (ties: insertion order):

- *arrival*: ``route(request, engines_view)`` picks an engine among the ready,
  non-draining ones; the request joins that engine's queue ``request_overhead_s`` later
  (the engine's API path, ``perf.Efficiency``; it counts in TTFT) or gets an error record;
- *step end*: the engine's tokens become visible (first token, finish), then the engine
  starts its next step at once if it has work (engines are never idle with work queued);
- *engine ready* / *engine removal*: ``add_engine(at_s, ready_after_s)`` adds an engine
  that accepts requests ``ready_after_s`` later (a cold start); ``remove_engine(at_s, i)``
  stops routing to it and lets it drain its in-flight requests;
- *callback*: ``call_at(at_s, fn)`` runs ``fn(simulation, now)`` (an autoscaler's control
  loop reschedules itself this way);
- *KV events*: with ``kv_events=fn``, the KV-cache events an engine's step produced
  (``BlockStored``/``BlockRemoved``/``AllBlocksCleared``, as vLLM publishes them per step)
  are handed to ``fn(engine_index, now, events)`` at the step's end plus
  ``kv_event_delay_s`` (the publisher-to-gateway lag), so a benchmark can feed a gateway's
  prefix index without sockets.

Prefill/decode disaggregation (``pd``): engines have a role (``roles=``, ``add_engine(role=)``;
default ``"both"``). When ``route`` picks a *prefill* engine, the request runs there with
``max_tokens`` 1; when that token is sampled (it is discarded, as vLLM's NixlConnector does),
``decode_route(request, engines_view)`` picks among the ready engines that are not prefill-only,
and the request joins that engine ``request_overhead_s`` (its API path: the router's second
call) plus ``pd.transfer_seconds(prompt tokens, the prefill model's kv_bytes_per_token, link)``
later, with ``kv_transferred_tokens`` = its prompt: the decode engine keeps stepping its other
requests meanwhile (the pull is asynchronous). A request routed straight to a decode engine
(a short prompt) simply runs there, and so does one ``route`` returns as ``RunWhole(choice)``,
even on a prefill engine. The record's first token is the decode engine's (what
the client sees first), ``prefill_engine`` and ``transfer_s`` say what the pair did.

``record_token_times=True`` keeps every output token's time in the record
(``token_times_s``), from which ``summarize`` adds the inter-token latency distribution
(``itl``: every gap between consecutive tokens, pooled over requests, as vLLM's
``benchmark_serving`` reports it; per-request mean ITL is ``tpot_s``).

``summarize(records)`` gives mean/P50/P90/P95/P99 of TTFT, TPOT, ITL, e2e and throughput.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

from runtime_components.common.kv_event_format import KVEvent
from runtime_components.common.stats import percentile

from .config import EngineConfig, EngineError, ExternalKVStore, SimRequest, StepResult
from .core import EngineCore
from .pd import DEFAULT_LINK_GBS, DEFAULT_TRANSFER_LATENCY_S, PdRole, transfer_seconds
from .stats import EngineStats

__all__ = ["EngineView", "KVEventsFn", "LatencySummary", "RequestRecord", "RunWhole", "Simulation", "Summary",
           "percentile", "summarize"]


@dataclass(frozen=True)
class RequestRecord:
    """The outcome of one request in a simulation."""

    request_id: str
    arrival_s: float
    first_token_s: float | None
    finish_s: float | None
    prompt_tokens: int
    output_tokens: int
    engine: int | None
    cached_tokens: int = 0
    error: str | None = None
    prefill_engine: int | None = None  #: P/D: the engine that computed the prompt (``engine`` decoded)
    transfer_s: float = 0.0  #: P/D: the KV transfer's duration
    token_times_s: tuple[float, ...] = ()  #: every output token's time (``record_token_times``)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float | None:
        return None if self.finish_s is None else self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (None for one-token answers)."""
        if self.finish_s is None or self.first_token_s is None or self.output_tokens < 2:
            return None
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def itl_s(self) -> tuple[float, ...]:
        """Gaps between consecutive output tokens (empty unless token times were recorded)."""
        t = self.token_times_s
        return tuple(b - a for a, b in zip(t, t[1:], strict=False))


class EngineView:
    """What a routing callback may read about one engine (read-only)."""

    def __init__(self, index: int, core: EngineCore, sim: Simulation) -> None:
        self.index = index
        self._core = core
        self._sim = sim

    @property
    def config(self) -> EngineConfig:
        return self._core.config

    @property
    def role(self) -> PdRole:
        return self._sim._engines[self.index].role

    @property
    def num_arriving(self) -> int:
        """Requests routed here and not yet queued (in the API path or a KV transfer): what a
        router knows it sent, which the engine's own counts do not show yet."""
        return self._sim._engines[self.index].arriving

    @property
    def num_prefill_legs(self) -> int:
        """P/D: prefill legs sent to this engine and not yet sampled (what a router that knows
        its own prefill calls counts; requests run whole here are not among them)."""
        return sum(1 for engine, _ in self._sim._prefill_legs.values() if engine == self.index)

    @property
    def num_running(self) -> int:
        return self._core.num_running

    @property
    def num_waiting(self) -> int:
        return self._core.num_waiting

    @property
    def kv_cache_usage(self) -> float:
        return self._core.kv_cache_usage

    @property
    def adapters(self) -> tuple[str, ...]:
        return self._core.adapters

    def stats(self) -> EngineStats:
        """The full vLLM-style snapshot (costlier than the properties above)."""
        return self._core.stats()

    def cached_prefix_blocks(self, hashes: Sequence[int]) -> int:
        """Oracle: how many leading blocks of ``hashes`` this engine holds (for analysis only;
        a real gateway cannot ask this)."""
        return len(self._core.pool.cached_prefix(hashes))


#: Returns an index into the engines it is given, or ``None`` when the router keeps the
#: request itself (to hand it back later with ``Simulation.submit``, e.g. after an adapter load).
@dataclass(frozen=True)
class RunWhole:
    """What ``route`` returns to run a request whole on the chosen engine, even a prefill
    engine (a short prompt on a prefill pod: the gateway's ``shortPromptsOnPrefillPods``)."""

    choice: int


RouteFn = Callable[[SimRequest, Sequence[EngineView]], "int | RunWhole | None"]

#: Receives one engine step's KV-cache events: (engine index, simulated time, events).
KVEventsFn = Callable[[int, float, Sequence[KVEvent]], None]


@dataclass(eq=False)
class _Engine:
    core: EngineCore
    view: EngineView
    ready_s: float
    role: PdRole = "both"
    arriving: int = 0  #: pushed _DIRECT events not yet delivered
    busy: bool = False
    draining: bool = False
    removed: bool = False
    inflight: dict[str, SimRequest] = field(default_factory=dict)


_ARRIVAL, _STEP_END, _REMOVE, _CALL, _DIRECT = range(5)
_ROLES = ("both", "prefill", "decode")


@dataclass(frozen=True)
class _DecodeLeg:
    """What a request's prefill leg left for its record."""

    prefill_engine: int
    transfer_s: float
    cached_tokens: int


class Simulation:
    """Engines plus a router, advanced event by event (see the module docstring)."""

    def __init__(
        self,
        configs: Sequence[EngineConfig],
        route: RouteFn,
        *,
        external_kv_store: ExternalKVStore | None = None,
        adapters: Sequence[str] = (),
        kv_events: KVEventsFn | None = None,
        kv_event_delay_s: float = 0.0,
        roles: Sequence[PdRole] | None = None,
        decode_route: RouteFn | None = None,
        link_gbs: float = DEFAULT_LINK_GBS,
        transfer_latency_s: float = DEFAULT_TRANSFER_LATENCY_S,
        record_token_times: bool = False,
    ) -> None:
        if kv_event_delay_s < 0:
            raise ValueError(f"kv_event_delay_s must be >= 0, got {kv_event_delay_s}")
        if roles is not None and len(roles) != len(configs):
            raise ValueError(f"roles has {len(roles)} entries for {len(configs)} engine configs; expected one per engine")
        if link_gbs <= 0 or transfer_latency_s < 0:
            raise ValueError(f"link_gbs must be > 0 and transfer_latency_s >= 0, got {link_gbs} and {transfer_latency_s}")
        self._route = route
        self._decode_route = decode_route
        self._link_gbs = link_gbs
        self._transfer_latency_s = transfer_latency_s
        self._token_times: dict[str, list[float]] | None = {} if record_token_times else None
        #: request id -> (the prefill engine running it, the request as the client sent it)
        self._prefill_legs: dict[str, tuple[int, SimRequest]] = {}
        self._decode_legs: dict[str, _DecodeLeg] = {}
        self._kv_events = kv_events
        self._kv_event_delay_s = kv_event_delay_s
        self._store = external_kv_store
        self._adapters = tuple(adapters)
        self._engines: list[_Engine] = []
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = itertools.count()
        self.now = 0.0
        self.records: list[RequestRecord] = []
        #: Called as ``fn(simulation, now)`` after a step in which requests finished (a gateway
        #: that wakes its dispatcher when a request ends sets it).
        self.on_finished: Callable[[Simulation, float], None] | None = None
        self._first: dict[str, tuple[float, int]] = {}
        for i, config in enumerate(configs):
            self.add_engine(0.0, config, ready_after_s=0.0, role=roles[i] if roles is not None else "both")

    # -- topology ------------------------------------------------------------------------

    def add_engine(
        self, at_s: float, config: EngineConfig | None = None, ready_after_s: float = 0.0, role: PdRole = "both"
    ) -> int:
        """Add an engine at ``at_s`` that accepts requests from ``at_s + ready_after_s``."""
        if role not in _ROLES:
            raise ValueError(f"engine role {role!r} is not one of {', '.join(_ROLES)}")
        if role == "prefill" and self._decode_route is None:
            raise ValueError("a prefill engine needs decode_route= (who decodes after the prefill); hint: pass one")
        if config is None:
            if not self._engines:
                raise ValueError("add_engine needs a config when the simulation has no engine to copy")
            config = self._engines[0].core.config
        core = EngineCore(config, external_kv_store=self._store, record_kv_events=self._kv_events is not None)
        for name in self._adapters:
            core.load_adapter(name)
        index = len(self._engines)
        engine = _Engine(core, EngineView(index, core, self), ready_s=max(at_s, self.now) + ready_after_s, role=role)
        self._engines.append(engine)
        return index

    def remove_engine(self, at_s: float, index: int) -> None:
        """From ``at_s`` route nothing more to engine ``index``; it finishes what it holds."""
        self._push(at_s, _REMOVE, index)

    def call_at(self, at_s: float, fn: Callable[[Simulation, float], None]) -> None:
        self._push(at_s, _CALL, fn)

    def submit(self, at_s: float, request: SimRequest, *, engine: int | None = None) -> None:
        """Hand a request (back) in at ``at_s``: routed again, or straight to ``engine``.

        The request keeps its own ``arrival_s``, so time it spent held counts in its TTFT.
        """
        if engine is None:
            self._push(at_s, _ARRIVAL, request)
        else:
            self._send(at_s, engine, request)

    def load_adapter(self, index: int, name: str) -> None:
        """Make engine ``index`` hold adapter ``name`` now (the caller models the load time)."""
        self._engines[index].core.load_adapter(name)

    def unload_adapter(self, index: int, name: str) -> None:
        self._engines[index].core.unload_adapter(name)

    @property
    def engines(self) -> list[EngineView]:
        return [e.view for e in self._engines]

    def routable(self) -> list[EngineView]:
        """Engines that are ready and not draining at the current time."""
        return [e.view for e in self._engines if e.ready_s <= self.now and not e.draining]

    def active_engine_count(self) -> int:
        """Engines provisioned (ready or starting) and not draining: what an autoscaler counts."""
        return sum(1 for e in self._engines if not e.draining)

    # -- running -------------------------------------------------------------------------

    def run(
        self,
        requests: Iterable[SimRequest],
        *,
        until_s: float = math.inf,
        max_events: int = 50_000_000,
    ) -> list[RequestRecord]:
        """Replay ``requests`` (any order) and return one record per request.

        Stops when every request is done, at ``until_s`` (requests still in flight get an
        error record ``"unfinished at end of run"``), or after ``max_events``.
        """
        for req in requests:
            self._push(req.arrival_s, _ARRIVAL, req)
        events = 0
        while self._heap and events < max_events:
            t, _, kind, payload = heapq.heappop(self._heap)
            if t > until_s:
                heapq.heappush(self._heap, (t, next(self._seq), kind, payload))
                break
            self.now = t
            events += 1
            if kind == _ARRIVAL:
                self._on_arrival(payload)  # type: ignore[arg-type]
            elif kind == _STEP_END:
                self._on_step_end(*payload)  # type: ignore[misc]
            elif kind == _REMOVE:
                self._engines[payload].draining = True  # type: ignore[index]
            elif kind == _CALL:
                payload(self, t)  # type: ignore[operator]
            elif kind == _DIRECT:
                target, sent = cast("tuple[int, SimRequest]", payload)
                self._engines[target].arriving -= 1
                self._enqueue(target, sent)
            self._kick_idle()
        if events >= max_events and self._heap:
            raise RuntimeError(f"simulation stopped after max_events={max_events}; raise it or shorten the trace")
        self._close_unfinished()
        return self.records

    def _kv_event_call(self, index: int, events: list[KVEvent]) -> Callable[[Simulation, float], None]:
        fn = self._kv_events
        assert fn is not None
        return lambda sim, now: fn(index, now, events)

    def _push(self, t: float, kind: int, payload: object) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, payload))

    def _on_arrival(self, req: SimRequest) -> None:
        candidates = self.routable()
        if not candidates:
            self._error(req, None, "no ready engine")
            return
        try:
            choice = self._route(req, candidates)
        except Exception as exc:  # a routing plugin's failure is the request's error, not the run's
            self._error(req, None, f"route failed: {type(exc).__name__}: {exc}")
            return
        if choice is None:
            return  # the router holds the request and will submit() it
        whole = isinstance(choice, RunWhole)  # run on the chosen engine as it is, even a prefill one
        choice = choice.choice if isinstance(choice, RunWhole) else choice
        if not 0 <= choice < len(candidates):
            self._error(req, None, f"route returned {choice}, expected 0..{len(candidates) - 1}")
            return
        index = candidates[choice].index
        if self._engines[index].role == "prefill" and not whole:  # P/D: the prompt and one token there
            self._prefill_legs[req.request_id] = (index, req)
            req = replace(req, max_tokens=1)
        delay = self._engines[index].core.model.efficiency.request_overhead_s
        if delay > 0:  # the API path before the scheduler sees it (client-visible, not GPU time)
            self._send(self.now + delay, index, req)
        else:
            self._enqueue(index, req)

    def _send(self, at_s: float, index: int, req: SimRequest) -> None:
        self._engines[index].arriving += 1
        self._push(at_s, _DIRECT, (index, req))

    def _to_decode(self, prefill: int, req: SimRequest, cached_tokens: int) -> None:
        """The prefill leg is done: pick the decode engine now and start the KV transfer."""
        candidates = [e.view for e in self._engines if e.ready_s <= self.now and not e.draining and e.role != "prefill"]
        if not candidates:
            self._error(req, None, "no ready decode engine after the prefill")
            return
        assert self._decode_route is not None  # add_engine refuses a prefill engine without one
        try:
            choice = self._decode_route(req, candidates)
        except Exception as exc:  # as for route: the request's error, not the run's
            self._error(req, None, f"decode route failed: {type(exc).__name__}: {exc}")
            return
        if choice is None or not 0 <= choice < len(candidates):
            self._error(req, None, f"decode route returned {choice}, expected 0..{len(candidates) - 1}")
            return
        index = candidates[choice].index
        n_prompt = len(req.prompt_token_ids)
        kv_bytes = self._engines[prefill].core.model.arch.kv_bytes_per_token
        transfer = transfer_seconds(n_prompt, kv_bytes, self._link_gbs, self._transfer_latency_s)
        # the router's second call crosses the decode engine's API path, then the engine pulls
        # the blocks while it keeps stepping (vLLM's WAITING_FOR_REMOTE_KVS)
        delay = self._engines[index].core.model.efficiency.request_overhead_s + transfer
        self._decode_legs[req.request_id] = _DecodeLeg(prefill, transfer, cached_tokens)
        self._send(self.now + delay, index, replace(req, kv_transferred_tokens=n_prompt))

    def _enqueue(self, index: int, req: SimRequest) -> None:
        engine = self._engines[index]
        try:
            engine.core.add_request(req)
        except EngineError as exc:
            self._error(req, engine.view.index, str(exc))
            return
        engine.inflight[req.request_id] = req

    def _kick_idle(self) -> None:
        for index, engine in enumerate(self._engines):
            if not engine.busy and engine.core.has_work():
                result = engine.core.step(self.now)
                if not result.scheduled:
                    raise RuntimeError(f"engine {index} has work but scheduled nothing at t={self.now}")
                engine.busy = True
                self._push(result.end_s, _STEP_END, (index, result))
                if self._kv_events is not None:
                    events = engine.core.take_kv_events()
                    if events:
                        self._push(result.end_s + self._kv_event_delay_s, _CALL, self._kv_event_call(index, events))

    def _on_step_end(self, index: int, result: StepResult) -> None:
        engine = self._engines[index]
        engine.busy = False
        times = self._token_times
        finished_before = len(self.records)
        for ev in result.events:
            rid = ev.request_id
            leg = self._prefill_legs.get(rid)
            if leg is not None and leg[0] == index:  # the prefill leg's token: not the client's
                if ev.finished:
                    del self._prefill_legs[rid]
                    engine.inflight.pop(rid)
                    self._to_decode(index, leg[1], ev.cached_tokens)
                continue
            if ev.index == 0:
                self._first[rid] = (result.end_s, ev.cached_tokens)
            if times is not None:
                times.setdefault(rid, []).append(result.end_s)
            if ev.finished:
                req = engine.inflight.pop(rid)
                first_s, cached = self._first.pop(rid, (result.end_s, 0))
                dleg = self._decode_legs.pop(rid, None)
                self.records.append(
                    RequestRecord(
                        req.request_id, req.arrival_s, first_s, result.end_s,
                        len(req.prompt_token_ids), ev.index + 1, index,
                        dleg.cached_tokens if dleg else cached, None,
                        dleg.prefill_engine if dleg else None, dleg.transfer_s if dleg else 0.0,
                        tuple(times.pop(rid, ())) if times is not None else (),
                    )  # fmt: skip
                )
        if self.on_finished is not None and len(self.records) > finished_before:
            self.call_at(result.end_s, self.on_finished)

    def _error(self, req: SimRequest, engine: int | None, message: str) -> None:
        self._forget(req.request_id)
        self.records.append(
            RequestRecord(req.request_id, req.arrival_s, None, None, len(req.prompt_token_ids), 0, engine, 0, message)
        )

    def _forget(self, request_id: str) -> tuple[float, int] | None:
        """Drop a request's per-leg state; returns its first token (time, cached) if it had one."""
        self._prefill_legs.pop(request_id, None)
        self._decode_legs.pop(request_id, None)
        if self._token_times is not None:
            self._token_times.pop(request_id, None)
        return self._first.pop(request_id, None)

    def _close_unfinished(self) -> None:
        unfinished = "unfinished at end of run"
        for index, engine in enumerate(self._engines):
            for req in engine.inflight.values():
                first = self._forget(req.request_id)
                self.records.append(
                    RequestRecord(
                        req.request_id, req.arrival_s, first[0] if first else None, None,
                        len(req.prompt_token_ids), 0, index, 0, unfinished,
                    )  # fmt: skip
                )
            engine.inflight.clear()
        # requests on their way to an engine (API path, KV transfer) when the run stopped
        in_transit = [item for item in self._heap if item[2] == _DIRECT]
        if in_transit:
            self._heap = [item for item in self._heap if item[2] != _DIRECT]
            heapq.heapify(self._heap)
            for _, _, _, (index, req) in sorted(in_transit):  # type: ignore[misc]
                self._engines[index].arriving -= 1
                self._forget(req.request_id)
                self.records.append(
                    RequestRecord(req.request_id, req.arrival_s, None, None, len(req.prompt_token_ids), 0, index, 0,
                                  unfinished)  # fmt: skip
                )


# -- summaries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySummary:
    mean: float
    p50: float
    p90: float
    p99: float
    p95: float = math.nan

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySummary:
        ordered = sorted(values)
        if not ordered:
            return cls(math.nan, math.nan, math.nan, math.nan)
        mean = sum(ordered) / len(ordered)
        return cls(mean, percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 99),
                   percentile(ordered, 95))  # fmt: skip


@dataclass(frozen=True)
class Summary:
    requests: int
    completed: int
    errors: int
    duration_s: float  #: first arrival to last finish
    req_per_s: float
    output_tok_per_s: float
    ttft: LatencySummary
    tpot: LatencySummary
    e2e: LatencySummary
    prefix_hit_fraction: float  #: cached prompt tokens / prompt tokens of completed requests
    #: every inter-token gap of completed requests, pooled (NaN without ``record_token_times``)
    itl: LatencySummary = LatencySummary(math.nan, math.nan, math.nan, math.nan)


def summarize(records: Sequence[RequestRecord]) -> Summary:
    """Latency percentiles and throughput of a run's records."""
    done = [r for r in records if r.error is None and r.finish_s is not None]
    start = min((r.arrival_s for r in records), default=0.0)
    end = max((r.finish_s for r in done if r.finish_s is not None), default=start)
    duration = max(end - start, 1e-9)
    prompt = sum(r.prompt_tokens for r in done)
    return Summary(
        requests=len(records),
        completed=len(done),
        errors=len(records) - len(done),
        duration_s=end - start,
        req_per_s=len(done) / duration if done else 0.0,
        output_tok_per_s=sum(r.output_tokens for r in done) / duration if done else 0.0,
        ttft=LatencySummary.of(r.ttft_s for r in done if r.ttft_s is not None),
        tpot=LatencySummary.of(r.tpot_s for r in done if r.tpot_s is not None),
        e2e=LatencySummary.of(r.e2e_s for r in done if r.e2e_s is not None),
        prefix_hit_fraction=sum(r.cached_tokens for r in done) / prompt if prompt else 0.0,
        itl=LatencySummary.of(gap for r in done for gap in r.itl_s),
    )
