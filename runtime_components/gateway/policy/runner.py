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

Bounded decisions: given the gateway's ``EndpointPool`` the router does not score every
endpoint when it can prove the best one is among a few. Each scorer may offer a shortlist:
*dense* scorers (least-request) their ``k`` best endpoints from the pool's load index, *sparse*
scorers (prefix-cache-aware, session-affinity) the endpoints where they score above 0 (the
prefix index's holders, the session's endpoint). With exactly one dense scorer, sparse ones
for the rest, filters that let every pool endpoint through for this request (model-match on
a one-model pool, lora-affinity without an adapter) and the max-score picker, only the union
of the shortlists is scored: the dense scorer's best totals at least as much as any endpoint
left out, so the choice is the full scoring's (up to ties). Otherwise every endpoint is scored.
A decision then costs nearly the same at 512 endpoints as at 8 (``benchmarks.routing``).

Hooks: call ``on_routed(req, endpoint)`` once the request has been sent to the endpoint
the router chose, ``on_finished(req, endpoint, outcome)`` when it ends (success or not),
and ``on_endpoint_removed(address)`` when discovery drops a pod. They reach every plugin
that implements ``base.Stateful``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from .base import Filter, PassThroughFilter, Picker, Scorer, ShortlistScorer, Stateful
from .pickers import MaxScorePicker
from .pool import EndpointPool
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

    def __init__(self, profile: Profile, *, shortlist_size: int = 4) -> None:
        self._profile = profile
        self._stateful: tuple[Stateful, ...] = tuple(p for p in profile.plugins() if isinstance(p, Stateful))
        #: endpoints a dense scorer puts forward (the best plus alternates for the gateway's fallbacks)
        self.shortlist_size = max(1, shortlist_size)
        kinds = [s.shortlist_kind if isinstance(s, ShortlistScorer) else None for s, _ in profile.scorers]
        # Exact when one dense scorer puts forward its best and every other scorer is sparse (0
        # off its shortlist): the dense scorer's best then totals at least as much as any
        # endpoint left out. Other profiles are scored in full.
        self._bounded = (
            isinstance(profile.picker, MaxScorePicker)
            and kinds.count("dense") == 1
            and all(k in ("dense", "sparse") for k in kinds)
            and all(isinstance(f, PassThroughFilter) for f in profile.filters)
        )

    @property
    def policy(self) -> str:
        """The policy string this router was built from."""
        return self._profile.name

    @property
    def profile(self) -> Profile:
        """The plugins this router runs (for logs and tests; do not mutate their state)."""
        return self._profile

    def pick(self, req: RouteRequest, endpoints: Sequence[EndpointState] | EndpointPool) -> EndpointState:
        """Return the endpoint for ``req``; raise ``NoEndpointError`` when none is eligible."""
        return self.decide(req, endpoints).endpoint

    def decide(self, req: RouteRequest, endpoints: Sequence[EndpointState] | EndpointPool) -> Decision:
        """Like ``pick``, and also return the scores and prefix match for logs and metrics.

        Given an ``EndpointPool`` (the gateway's live pool) the router first tries the bounded
        path (see the module docstring); a plain sequence is always scored in full."""
        if not len(endpoints):
            raise NoEndpointError(f'no ready endpoint serves model "{req.model}"')
        if isinstance(endpoints, EndpointPool):
            shortlisted = self._shortlist(req, endpoints)
            if shortlisted is not None:
                return self._score_and_pick(req, shortlisted, len(endpoints))
            endpoints = endpoints.values()
        candidates: list[EndpointState] = list(endpoints)
        for flt in self._profile.filters:
            kept = flt.filter(req, candidates)
            _check_subset(flt.name, kept, candidates)
            if not kept:
                raise NoEndpointError(
                    f'filter "{flt.name}" left none of {len(candidates)} endpoint(s): {flt.why_empty(req)}'
                )
            candidates = list(kept)
        return self._score_and_pick(req, candidates, len(candidates))

    def _shortlist(self, req: RouteRequest, pool: EndpointPool) -> list[EndpointState] | None:
        """The union of the scorers' shortlists when it provably holds the best endpoint; else None."""
        if not self._bounded:
            return None
        for flt in self._profile.filters:
            if not cast(PassThroughFilter, flt).passes_all(req, pool):
                return None
        scorers = self._profile.scorers
        if len(scorers) == 1:  # nothing to merge (least-request alone)
            return cast(ShortlistScorer, scorers[0][0]).shortlist(req, pool, self.shortlist_size)
        chosen: dict[str, EndpointState] = {}
        for scorer, _ in scorers:
            for endpoint in cast(ShortlistScorer, scorer).shortlist(req, pool, self.shortlist_size):
                chosen[endpoint.address] = endpoint
        return list(chosen.values())

    def _score_and_pick(self, req: RouteRequest, candidates: list[EndpointState], eligible: int) -> Decision:
        totals = {e.address: 0.0 for e in candidates}
        for scorer, weight in self._profile.scorers:
            raw = scorer.score(req, candidates)
            for address in totals:
                value = float(raw.get(address, 0.0))
                totals[address] += weight * (value if 0.0 <= value <= 1.0 else clamp_score(value))

        scored = [(e, totals[e.address]) for e in candidates]
        chosen = self._profile.picker.pick(req, scored)
        if chosen.address not in totals:  # the candidates' addresses: no set built per request
            _check_subset(self._profile.picker.name, [chosen], candidates)

        matches: Mapping[str, float] | None = req.scratch.get(PREFIX_MATCH_KEY)
        prefix_match = None if matches is None else matches.get(chosen.address)
        return Decision(
            endpoint=chosen,
            policy=self._profile.name,
            candidates=eligible,
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
