"""The dispatcher: holds a request until one of its model's engines has room, or refuses it.

Where it sits: ``GatewayCore.admit`` awaits ``FlowController.hold`` after the rate limit and
before routing; the endpoints it returns (those with room) are what the router chooses from.

    arrival --room and nobody queued--> route now
            \\-> ModelQueue (band, fairness, arrival) --dispatcher: a slot frees--> route
                                       \\-> shed: queue full (lowest band first), timeout, client gone

One dispatcher task per model runs while that model has held requests; it wakes when a
request finishes (``wake``), when a request arrives, and every ``tick_s`` (new scrapes, new
pods). A grant is counted as pending until the woken request has routed (no await lies
between the two), so one free slot is never given twice.

Fair-share headroom: the controller counts each user's requests in flight (from the moment
``hold`` lets one through to ``wake(model, user)`` when it finishes); a user below its fair
share of the model's in-flight requests gets the engines' whole waiting budget, a user over it
the budget less ``underShareReserve`` (``saturation.py``). A light user's request is then sent
at once and finds a short queue inside the engine, while a heavy user keeps at least one place.
Of the engines with room, a light user is offered those this gateway sent the fewest prompt
tokens to in the last moment (``prefill.py``): its prompt then does not wait behind a long
prefill step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aibrix_spec.components.gateway import PRIORITY_HEADER, FlowControlConfig, TierSpec

from ..endpoints import EndpointTable
from ..errors import GatewayError, bad_request, cold_start_timeout, over_capacity
from ..policy.types import EndpointState
from .fairness import Held
from .metrics import FlowMetrics
from .prefill import RecentPrefill
from .queue import ModelQueue
from .saturation import SaturationDetector

__all__ = ["PRIORITY_HEADER", "FlowController", "StatesFn", "table_states"]


StatesFn = Callable[[str], Sequence[EndpointState]]


def engine_priority(band: int, under_share: bool | None) -> int:
    """vLLM priority (lower first) of a request in priority ``band`` (higher first) whose user is
    under its fair share (True), over it (False) or alone (None: as under)."""
    return -2 * band + (1 if under_share is False else 0)


def table_states(table: EndpointTable) -> StatesFn:
    """The one place flow control reads a model's endpoint states (the up ones)."""
    return lambda model: table.states(model, time.monotonic())[0]


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[list[EndpointState]]
    arrived: float
    cold: bool  #: the model had no endpoint at all when it arrived
    granted: bool = False


class FlowController:
    """Per-model queues of one gateway process (event-loop owned, no locks)."""

    def __init__(self, config: FlowControlConfig, tiers: Mapping[str, TierSpec], states: StatesFn,
                 metrics: FlowMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._tiers = dict(tiers)
        self._states = states
        self._detector = SaturationDetector(config.saturation)
        self._clock = clock
        self._queues: dict[str, ModelQueue] = {}
        self._pending: dict[str, int] = {}  # granted, not yet routed
        self._sent: dict[str, dict[str, int]] = {}  # model -> user -> requests let through, not finished
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._prefill = RecentPrefill()
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # -- what the metrics read -------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, dict[int, int]], dict[str, int]]:
        depths = {model: queue.depth() for model, queue in self._queues.items()}
        inflight: dict[str, int] = {}
        for model in depths:
            inflight[model] = sum(e.inflight for e in self._states(model))
        return depths, inflight

    def held(self, model: str) -> int:
        queue = self._queues.get(model)
        return len(queue) if queue is not None else 0

    # -- request side ----------------------------------------------------------------------
    def priority_of(self, tier: str | None, headers: Mapping[str, str]) -> int:
        """The tier's priority, lowered by ``x-request-priority`` where the config allows it."""
        spec = self._tiers.get(tier) if tier is not None else None
        priority = spec.priority if spec is not None else 0
        text = headers.get(PRIORITY_HEADER)
        if text is None or not self.config.allow_priority_header:
            return priority
        try:
            asked = int(text)
        except ValueError:
            raise bad_request(f"The {PRIORITY_HEADER} header must be a whole number 0..{priority}, got {text!r}") from None
        if not 0 <= asked <= priority:
            raise bad_request(
                f"The {PRIORITY_HEADER} header may lower a request's priority, not raise it: it must be within "
                f"0..{priority} (your tier's priority), got {asked}")
        return asked

    async def hold(self, model: str, flow: str, priority: int, cost: float) -> list[EndpointState] | None:
        """Wait until an engine of ``model`` has room for user ``flow``; see ``_hold``. A request
        let through counts as this user's in flight until ``wake(model, flow)``."""
        room = await self._hold(model, flow, priority, cost)
        if room is not None:
            self._started(model, flow)
        return room

    async def _hold(self, model: str, flow: str, priority: int, cost: float) -> list[EndpointState] | None:
        """Wait until an engine of ``model`` has room; return the endpoints that have room.

        ``None`` when flow control is off (route over every endpoint, as before). Raises a
        :class:`GatewayError` (429 or 503 with Retry-After) when the request is shed."""
        if not self.config.enabled:
            return None
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = ModelQueue(self.config.fairness)
            self._pending[model] = 0
            self._wake[model] = asyncio.Event()
        endpoints = list(self._states(model))
        if not len(queue):
            light = self.under_share(model, flow)
            room, free = self._detector.with_room(endpoints, under_share=light)
            if free - self._pending[model] > 0:
                if self.metrics is not None:  # not held: a wait of 0 belongs in the distribution too
                    self.metrics.wait_seconds.labels(model, str(priority)).observe(0.0)
                return self._for(light, room)
        self._make_place(model, queue, priority)
        item = Held(flow=flow, priority=priority, cost=max(1.0, cost), seq=queue.next_seq())
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self._clock(), cold=not endpoints)
        item.payload = waiter
        queue.push(item)
        if waiter.cold and self.metrics is not None:
            self.metrics.cold_start_holds.labels(model).inc()
        self._ensure_dispatcher(model)
        self._wake[model].set()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), self.config.queue_timeout_s)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                return waiter.future.result()  # granted in the same instant the timer fired
            queue.remove(item)
            raise self._timed_out(model, priority, waiter) from None
        except asyncio.CancelledError:  # the client went away (the ext_proc stream ended)
            if queue.remove(item):
                self._count_shed(model, priority, "client_gone")
            raise
        finally:
            if waiter.granted:
                self._pending[model] -= 1  # routing follows without an await: the slot shows as in flight
                self._wake[model].set()

    def wake(self, model: str, flow: str | None = None) -> None:
        """A request of ``model`` (from user ``flow``, when known) finished, or failed before it
        reached an engine: its slot may go to a held one."""
        counts = self._sent.get(model)
        if flow is not None and counts is not None and counts.get(flow, 0) > 0:
            counts[flow] -= 1
            if not counts[flow]:
                del counts[flow]
        event = self._wake.get(model)
        if event is not None and self.held(model):
            event.set()

    def routed(self, address: str, prompt_tokens: int) -> None:
        """A request let through went to ``address`` with ``prompt_tokens`` to prefill."""
        if self.config.enabled:
            self._prefill.add(address, prompt_tokens, self._clock())

    def _for(self, light: bool | None, room: list[EndpointState]) -> list[EndpointState]:
        """The endpoints offered to a user: a light one gets those prefilling least."""
        return self._prefill.lightest(room, self._clock()) if light is True else room

    def under_share(self, model: str, flow: str) -> bool | None:
        """Whether ``flow`` has fewer requests in flight than the model's in-flight requests
        divided by its active users (those with a request in flight or held); None when it is
        the only active user or ``underShareReserve`` is 0 (``SaturationDetector.share``)."""
        return self._share_of(model)(flow)

    def engine_priority(self, model: str, flow: str, band: int) -> int:
        """The request's ``priority`` for an engine that schedules by it (vLLM's
        ``--scheduling-policy priority``, lower first): higher bands first; inside a band, a user
        under its fair share (this request counted) before one over it. The engine then starts
        a light user's prompt ahead of the heavy users' requests already waiting inside it."""
        return engine_priority(band, self.under_share(model, flow))

    def _share_of(self, model: str) -> Callable[[str], bool | None]:
        """``under_share`` for any user of ``model``, from one snapshot (one pass over the users)."""
        counts = self._sent.get(model, {})
        queue = self._queues.get(model)
        active = set(counts) | (queue.flows() if queue is not None else set())
        total = sum(counts.values())
        return lambda flow: self._detector.share(counts.get(flow, 0), total, len(active) + (flow not in active))

    def _light_of(self, model: str) -> Callable[[str], bool]:
        share = self._share_of(model)
        return lambda flow: share(flow) is True

    def _started(self, model: str, flow: str) -> None:
        counts = self._sent.setdefault(model, {})
        counts[flow] = counts.get(flow, 0) + 1

    # -- shedding ----------------------------------------------------------------------------
    def _make_place(self, model: str, queue: ModelQueue, priority: int) -> None:
        if len(queue) < self.config.max_queue_per_model:
            return
        lowest = queue.lowest()
        if lowest is None or lowest.priority >= priority:
            self._count_shed(model, priority, "queue_full")
            raise over_capacity(model, f"{len(queue)} requests are already waiting (gateway.flowControl."
                                f"maxQueuePerModel) at this priority or above", self._retry_after(), "queue_full")
        queue.remove(lowest)
        self._count_shed(model, lowest.priority, "evicted")
        evicted: _Waiter = lowest.payload  # type: ignore[assignment]
        evicted.future.set_exception(over_capacity(
            model, "the queue is full and a request of higher priority took this place", self._retry_after(), "evicted"))

    def _timed_out(self, model: str, priority: int, waiter: _Waiter) -> GatewayError:
        waited = self._clock() - waiter.arrived
        if not list(self._states(model)):
            self._count_shed(model, priority, "cold_start_timeout")
            return cold_start_timeout(model, waited, self._retry_after())
        self._count_shed(model, priority, "queue_timeout")
        return over_capacity(model, f"every engine stayed full for {waited:.0f} s (gateway.flowControl.queueTimeout)",
                             self._retry_after(), "queue_timeout")

    def _retry_after(self) -> float:
        return min(self.config.queue_timeout_s, 30.0)

    def _count_shed(self, model: str, priority: int, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.shed.labels(model, str(priority), reason).inc()

    # -- dispatcher --------------------------------------------------------------------------
    def _ensure_dispatcher(self, model: str) -> None:
        task = self._tasks.get(model)
        if task is None or task.done():
            self._tasks[model] = asyncio.create_task(self._dispatch(model), name=f"flow-{model}")

    async def _dispatch(self, model: str) -> None:
        queue, wake = self._queues[model], self._wake[model]
        while len(queue):
            wake.clear()
            self.dispatch_now(model)
            if not len(queue):
                break
            try:
                await asyncio.wait_for(wake.wait(), self.config.tick_s)
            except TimeoutError:
                pass

    def dispatch_now(self, model: str) -> int:
        """Grant as many held requests as there are free slots; returns how many."""
        queue = self._queues[model]
        if not len(queue):
            return 0
        states = self._states(model)
        granted = 0
        while len(queue):
            item = queue.peek()
            waiter: _Waiter = item.payload  # type: ignore[assignment]
            if waiter.future.done():  # its client is gone and the cancellation is on its way
                queue.pop()
                continue
            # Room as the next request's user sees it (over its fair share: less the reserve).
            light = self.under_share(model, item.flow)
            room, free = self._detector.with_room(states, under_share=light)
            if free - self._pending[model] <= 0:
                if light is not False:
                    break  # no room even for a light user (or the only one)
                # A heavy head without room: a light user's request of the same band may pass it.
                found = queue.first_of(self._light_of(model))
                if found is None:
                    break
                light = True
                room, free = self._detector.with_room(states, under_share=True)
                if free - self._pending[model] <= 0:
                    break
                item, waiter = found, found.payload  # type: ignore[assignment]
                queue.take(item)
                if waiter.future.done():
                    continue
            else:
                queue.pop()
            waiter.granted = True
            self._pending[model] += 1
            waiter.future.set_result(self._for(light, room))
            now = self._clock()
            if self.metrics is not None:
                self.metrics.wait_seconds.labels(model, str(item.priority)).observe(now - waiter.arrived)
                if waiter.cold:
                    self.metrics.cold_start_seconds.labels(model).observe(now - waiter.arrived)
            granted += 1
        return granted
