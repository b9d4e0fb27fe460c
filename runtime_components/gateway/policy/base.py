"""The three extension points of the router, one small Protocol each (STYLE.md 5b).

Where it sits: ``runner.Router`` runs a profile of plugins for every request:

    candidates --Filter*--> eligible --Scorer* (weighted, clamped to [0,1])--> scored --Picker--> endpoint

- ``Filter.filter(req, endpoints)`` returns a subset; ``why_empty(req)`` explains an empty one.
- ``Scorer.score(req, endpoints)`` returns ``{address: score}``; higher is better. The runner
  clamps each score to [0, 1], treats a missing address or NaN as 0, multiplies by the
  scorer's weight and sums.
- ``Picker.pick(req, scored)`` chooses one of the scored endpoints.

Every plugin has a ``name`` (its kebab-case type string) and may implement the ``Stateful``
hooks to keep long-lived state (the prefix index, session table). Plugins make no network
calls, read metrics only from the ``EndpointState`` snapshot, and draw randomness only from
the ``random.Random`` their factory was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from .types import EndpointState, RequestOutcome, RouteRequest

if TYPE_CHECKING:
    from .pool import EndpointPool

__all__ = ["Filter", "PassThroughFilter", "Picker", "Plugin", "Scorer", "ShortlistScorer", "Stateful"]


@runtime_checkable
class Plugin(Protocol):
    """Anything the registry builds: it has a type name."""

    name: str


@runtime_checkable
class Filter(Plugin, Protocol):
    """Removes endpoints that must not serve the request."""

    def filter(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> list[EndpointState]: ...

    def why_empty(self, req: RouteRequest) -> str:
        """One sentence saying why no endpoint passed (used in the 503 message)."""
        ...


@runtime_checkable
class Scorer(Plugin, Protocol):
    """Rates endpoints for the request; higher is better, nominally in [0, 1]."""

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]: ...


@runtime_checkable
class PassThroughFilter(Filter, Protocol):
    """A filter that can tell, without a scan, that it keeps every endpoint of a pool."""

    def passes_all(self, req: RouteRequest, pool: EndpointPool) -> bool: ...


@runtime_checkable
class ShortlistScorer(Scorer, Protocol):
    """A scorer that can name the endpoints worth scoring (see ``runner``: bounded decisions).

    ``dense``: the ``k`` endpoints it rates best, best first (its score elsewhere is no higher);
    ``sparse``: every endpoint it rates above 0."""

    shortlist_kind: Literal["dense", "sparse"]

    def shortlist(self, req: RouteRequest, pool: EndpointPool, k: int) -> list[EndpointState]: ...


@runtime_checkable
class Picker(Plugin, Protocol):
    """Chooses one endpoint from (endpoint, weighted total score) pairs; never given an empty list."""

    def pick(self, req: RouteRequest, scored: Sequence[tuple[EndpointState, float]]) -> EndpointState: ...


@runtime_checkable
class Stateful(Protocol):
    """Optional hooks for plugins with long-lived state; the router forwards its own hooks here."""

    def on_routed(self, req: RouteRequest, endpoint: EndpointState) -> None:
        """The request was sent to ``endpoint``."""
        ...

    def on_finished(self, req: RouteRequest, endpoint: EndpointState, outcome: RequestOutcome) -> None:
        """The request sent to ``endpoint`` ended."""
        ...

    def on_endpoint_removed(self, address: str) -> None:
        """Discovery dropped the endpoint at ``address``; forget it."""
        ...
