"""Long-lived routing state, owned outside the plugins so that it can be shared.

Where it sits: ``build_router(..., state=..., scope=model)`` hands each stateful plugin its
state from a ``RoutingState``: one prefix index per (model, block size) and one session table
per (model, header). Routers of the same model (the configured policy and any
``x-routing-policy`` override) then share what they learned, and the gateway's
``routing_sync`` swaps in subclasses that also replicate every change to the other gateway
processes (workers of a pod, replicas of the Deployment). Without a ``RoutingState`` each
router gets private state, as in tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .prefix import PrefixIndex
from .session import SessionTable

__all__ = ["RoutingState", "StateScope"]


class RoutingState:
    """Every shared state object of one gateway process, by key; built on first use."""

    def __init__(
        self,
        prefix_index: Callable[[str, int], PrefixIndex] | None = None,
        session_table: Callable[[str, int], SessionTable] | None = None,
    ) -> None:
        # factories take (key, bound): the key names the object across processes
        self._make_index = prefix_index or (lambda key, bound: PrefixIndex(bound))
        self._make_table = session_table or (lambda key, bound: SessionTable(bound))
        self.prefix_indexes: dict[str, PrefixIndex] = {}
        self.session_tables: dict[str, SessionTable] = {}

    def prefix_index(self, scope: str, block_size: int, max_entries: int) -> PrefixIndex:
        key = f"{scope}|{block_size}"
        if key not in self.prefix_indexes:
            self.prefix_indexes[key] = self._make_index(key, max_entries)
        return self.prefix_indexes[key]

    def session_table(self, scope: str, header: str, max_sessions: int) -> SessionTable:
        key = f"{scope}|{header.lower()}"
        if key not in self.session_tables:
            self.session_tables[key] = self._make_table(key, max_sessions)
        return self.session_tables[key]


@dataclass(frozen=True, slots=True)
class StateScope:
    """What a plugin factory sees: the state registry (None: private state) and the model."""

    state: RoutingState | None = None
    scope: str = ""

    def prefix_index(self, block_size: int, max_entries: int) -> PrefixIndex:
        if self.state is None:
            return PrefixIndex(max_entries)
        return self.state.prefix_index(self.scope, block_size, max_entries)

    def session_table(self, header: str, max_sessions: int) -> SessionTable:
        if self.state is None:
            return SessionTable(max_sessions)
        return self.state.session_table(self.scope, header, max_sessions)
