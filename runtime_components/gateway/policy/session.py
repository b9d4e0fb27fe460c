"""session-affinity: keep a session's requests on the endpoint that served it before.

Where it sits: a ``Scorer`` with long-lived state (``base.Stateful``). The session key is
``RouteRequest.session_id``, else the configured header (default ``x-session-id``).

Score: 1 for the endpoint the session was last routed to, 0 for the others (and 0 for all
when the request has no session or the session is new). The built-in preset weights it 2
against least-request's 1, so an existing session always sticks while its endpoint is a
candidate, and a new session (or one whose endpoint left) goes to the least-loaded one.

State: an LRU table session -> address, at most ``max_sessions`` entries; a session is
(re)bound on ``on_routed``, dropped when its endpoint fails a request or leaves discovery.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from .types import EndpointState, RequestOutcome, RouteRequest

if TYPE_CHECKING:
    from .pool import EndpointPool

__all__ = ["SessionAffinityScorer", "SessionTable"]


class SessionTable:
    """session -> address, LRU-bounded to ``max_sessions`` entries."""

    def __init__(self, max_sessions: int) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self._max = max_sessions
        self._table: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def get(self, session: str) -> str | None:
        return self._table.get(session)

    def bind(self, session: str, address: str) -> None:
        """``session`` now lives on ``address`` (the most recent entry)."""
        self._table[session] = address
        self._table.move_to_end(session)
        while len(self._table) > self._max:
            self._table.popitem(last=False)

    def unbind(self, session: str, address: str) -> None:
        """Forget ``session`` if it is bound to ``address``."""
        if self._table.get(session) == address:
            del self._table[session]

    def forget(self, address: str) -> None:
        """Forget every session bound to ``address``."""
        for session in [s for s, a in self._table.items() if a == address]:
            del self._table[session]


class SessionAffinityScorer:
    """Scores 1 for the endpoint that served the request's session last."""

    name = "session-affinity"
    shortlist_kind: Literal["sparse"] = "sparse"

    def __init__(self, header: str, max_sessions: int, table: SessionTable | None = None) -> None:
        self._header = header.lower()
        #: shared with other routers (and, through routing_sync, other gateway processes) when given
        self.table = table if table is not None else SessionTable(max_sessions)

    def session_of(self, req: RouteRequest) -> str | None:
        """The request's session key, or None."""
        return req.session_id or req.headers.get(self._header) or None

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        session = self.session_of(req)
        bound = self.table.get(session) if session else None
        return {e.address: 1.0 if e.address == bound else 0.0 for e in endpoints}

    def shortlist(self, req: RouteRequest, pool: EndpointPool, k: int) -> list[EndpointState]:
        """The session's endpoint, when it is still in the pool."""
        session = self.session_of(req)
        bound = self.table.get(session) if session else None
        state = pool.get(bound) if bound is not None else None
        return [state] if state is not None else []

    def on_routed(self, req: RouteRequest, endpoint: EndpointState) -> None:
        session = self.session_of(req)
        if session is not None:
            self.table.bind(session, endpoint.address)

    def on_finished(self, req: RouteRequest, endpoint: EndpointState, outcome: RequestOutcome) -> None:
        session = self.session_of(req)
        if not outcome.success and session is not None:
            self.table.unbind(session, endpoint.address)

    def on_endpoint_removed(self, address: str) -> None:
        self.table.forget(address)

    def __len__(self) -> int:
        return len(self.table)
