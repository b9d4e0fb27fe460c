"""The live candidate set of one model, kept current by events rather than rebuilt per request.

Where it sits: the gateway's endpoint table owns one ``EndpointPool`` per model and updates it
as requests start and end (in-flight counts) and as scrapes arrive; the router reads it for
every request (``Router.decide(req, pool)``). A decision must not cost more at 512 engines than
at 8, so the pool answers the two questions the built-in scorers ask without a scan:

- ``least_loaded(k)``: the ``k`` endpoints with the lowest ``endpoint_load`` (a lazy min-heap:
  a change pushes a new entry and the old one is skipped when it surfaces; O(log n) per
  change and O(k log n) per question);
- ``get(address)``: one endpoint's current state, for the addresses a prefix index or a
  session table names.

Ties between equally loaded endpoints go to the one whose load changed longest ago, so idle
engines take turns (round robin among equals) instead of the first one taking everything.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from .types import EndpointState, endpoint_load

__all__ = ["EndpointPool"]


class EndpointPool:
    """Current ``EndpointState`` per address, with an incremental least-loaded index."""

    __slots__ = ("_states", "_heap", "_live", "_seq", "_models")

    def __init__(self, endpoints: Iterable[EndpointState] = ()) -> None:
        self._states: dict[str, EndpointState] = {}
        self._heap: list[tuple[float, int, str]] = []  # (load, change number, address)
        self._live: dict[str, int] = {}  # address -> change number of its valid heap entry
        self._seq = 0
        self._models: dict[str, int] = {}  # model name -> endpoints serving it
        for endpoint in endpoints:
            self.put(endpoint)

    # -- updates ---------------------------------------------------------------------------
    def put(self, state: EndpointState) -> None:
        """Add ``state``'s endpoint or replace its previous state."""
        address = state.address
        old = self._states.get(address)
        self._states[address] = state
        if old is None or old.model != state.model:
            if old is not None:
                self._count_model(old.model, -1)
            self._count_model(state.model, 1)
        load = endpoint_load(state)
        if old is None or endpoint_load(old) != load:
            self._seq += 1
            self._live[address] = self._seq
            heapq.heappush(self._heap, (load, self._seq, address))
            if len(self._heap) > 4 * len(self._states) + 64:
                self._compact()

    def remove(self, address: str) -> None:
        """Forget the endpoint at ``address`` (its heap entry goes stale)."""
        old = self._states.pop(address, None)
        if old is not None:
            del self._live[address]
            self._count_model(old.model, -1)

    def _count_model(self, model: str, delta: int) -> None:
        count = self._models.get(model, 0) + delta
        if count:
            self._models[model] = count
        else:
            del self._models[model]

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._live.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)

    # -- reads -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[EndpointState]:
        return iter(self._states.values())

    def __contains__(self, address: object) -> bool:
        return address in self._states

    def get(self, address: str) -> EndpointState | None:
        return self._states.get(address)

    def values(self) -> list[EndpointState]:
        """Every endpoint (a new list; O(n): the full scoring path only)."""
        return list(self._states.values())

    def serves_only(self, model: str) -> bool:
        """Whether every endpoint serves ``model`` (or an unknown model, "")."""
        models = self._models
        if len(models) == 1:  # the usual pool: one model (asked per request)
            return model in models or "" in models
        return all(m in ("", model) for m in models)

    def least_loaded(self, k: int, exclude: frozenset[str] | set[str] = frozenset()) -> list[EndpointState]:
        """Up to ``k`` endpoints with the lowest load, lowest first, skipping ``exclude``."""
        heap, live = self._heap, self._live
        found: list[EndpointState] = []
        kept: list[tuple[float, int, str]] = []
        while heap and len(found) < k:
            entry = heapq.heappop(heap)
            if live.get(entry[2]) != entry[1]:
                continue  # superseded by a later change, or removed
            kept.append(entry)
            if entry[2] not in exclude:
                found.append(self._states[entry[2]])
        for entry in kept:
            heapq.heappush(heap, entry)
        return found

    def min_load(self) -> float:
        """The lowest ``endpoint_load`` in the pool (0 when empty)."""
        lowest = self.least_loaded(1)
        return endpoint_load(lowest[0]) if lowest else 0.0
