"""The router: runs one profile (filters, weighted scorers, one picker) per request.

Where it sits: ``registry.build_router`` turns a ``RoutingSpec`` into a ``Profile`` of
plugin instances and wraps it in a ``Router``; the gateway calls ``Router.pick`` (or
``decide``) for each request and the hooks as requests are sent and end.

The runner, not the plugins, enforces the invariants:

- filters run in order; an empty result raises ``NoEndpointError`` naming the filter and
  its reason, so the gateway can answer 503 with it;
- a plugin returning an endpoint it was not given raises ``PluginContractError`` (a bug);
- each scorer's score is clamped to [0, 1] (NaN or missing -> 0), then
  ``total(e) = sum_i weight_i * clamp(score_i(e))``;
- the picker must return one of the scored endpoints.

Hooks: call ``on_routed(req, endpoint)`` once the request has been sent to the endpoint
the router chose, ``on_finished(req, endpoint, outcome)`` when it ends (success or not),
and ``on_endpoint_removed(address)`` when discovery drops a pod. They reach every plugin
that implements ``base.Stateful``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .base import Filter, Picker, Scorer, Stateful
from .types import Decision, EndpointState, NoEndpointError, PluginContractError, RequestOutcome, RouteRequest

__all__ = ["PREFIX_MATCH_KEY", "Profile", "Router", "clamp_score"]

#: ``RouteRequest.scratch`` key where the prefix scorer leaves {address: matched fraction}.
PREFIX_MATCH_KEY = "prefix_match"


def clamp_score(value: float) -> float:
    """Clamp a plugin's score into [0, 1]; NaN counts as 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


@dataclass(frozen=True, slots=True)
class Profile:
    """One policy, built: filters in order, (scorer, weight) pairs, one picker."""

    name: str
    filters: tuple[Filter, ...]
    scorers: tuple[tuple[Scorer, float], ...]
    picker: Picker

    def plugins(self) -> list[object]:
        """Every distinct plugin instance, in the order they run."""
        seen: list[object] = []
        for plugin in (*self.filters, *(s for s, _ in self.scorers), self.picker):
            if not any(plugin is p for p in seen):
                seen.append(plugin)
        return seen


class Router:
    """Picks an endpoint per request by running a ``Profile``; holds the plugins' long-lived state."""

    def __init__(self, profile: Profile) -> None:
        self._profile = profile
        self._stateful: tuple[Stateful, ...] = tuple(p for p in profile.plugins() if isinstance(p, Stateful))

    @property
    def policy(self) -> str:
        """The policy string this router was built from."""
        return self._profile.name

    @property
    def profile(self) -> Profile:
        """The plugins this router runs (for logs and tests; do not mutate their state)."""
        return self._profile

    def pick(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> EndpointState:
        """Return the endpoint for ``req``; raise ``NoEndpointError`` when none is eligible."""
        return self.decide(req, endpoints).endpoint

    def decide(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Decision:
        """Like ``pick``, and also return the scores and prefix match for logs and metrics."""
        if not endpoints:
            raise NoEndpointError(f'no ready endpoint serves model "{req.model}"')
        candidates: list[EndpointState] = list(endpoints)
        for flt in self._profile.filters:
            kept = flt.filter(req, candidates)
            _check_subset(flt.name, kept, candidates)
            if not kept:
                raise NoEndpointError(
                    f'filter "{flt.name}" left none of {len(candidates)} endpoint(s): {flt.why_empty(req)}'
                )
            candidates = list(kept)

        totals = {e.address: 0.0 for e in candidates}
        for scorer, weight in self._profile.scorers:
            raw = scorer.score(req, candidates)
            for address in totals:
                totals[address] += weight * clamp_score(float(raw.get(address, 0.0)))

        scored = [(e, totals[e.address]) for e in candidates]
        chosen = self._profile.picker.pick(req, scored)
        _check_subset(self._profile.picker.name, [chosen], candidates)

        matches: Mapping[str, float] | None = req.scratch.get(PREFIX_MATCH_KEY)
        prefix_match = None if matches is None else matches.get(chosen.address)
        return Decision(
            endpoint=chosen,
            policy=self._profile.name,
            candidates=len(candidates),
            scores=totals,
            prefix_match=prefix_match,
        )

    def on_routed(self, req: RouteRequest, endpoint: EndpointState) -> None:
        """Tell stateful plugins the request was sent to ``endpoint``."""
        for plugin in self._stateful:
            plugin.on_routed(req, endpoint)

    def on_finished(self, req: RouteRequest, endpoint: EndpointState, outcome: RequestOutcome) -> None:
        """Tell stateful plugins the request sent to ``endpoint`` ended with ``outcome``."""
        for plugin in self._stateful:
            plugin.on_finished(req, endpoint, outcome)

    def on_endpoint_removed(self, address: str) -> None:
        """Tell stateful plugins that discovery dropped ``address``."""
        for plugin in self._stateful:
            plugin.on_endpoint_removed(address)


def _check_subset(plugin: str, returned: Sequence[EndpointState], given: Sequence[EndpointState]) -> None:
    allowed = {e.address for e in given}
    strays = [e.address for e in returned if e.address not in allowed]
    if strays:
        raise PluginContractError(f'plugin "{plugin}" returned endpoint(s) it was not given: {", ".join(strays)}')
