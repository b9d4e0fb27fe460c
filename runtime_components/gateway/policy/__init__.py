"""Routing policies of the gateway as plugins: filters, weighted scorers and a picker.

The public surface (everything else in this package is internal)::

    from runtime_components.gateway.policy import build_router, RouteRequest, EndpointState
    router = build_router(routing_spec, rng=random.Random(seed))
    endpoint = router.pick(request, endpoints)   # or router.decide(...) for scores too;
                                                 # endpoints: a list, or a live EndpointPool
    router.on_routed(request, endpoint)          # once the request is sent there
    router.on_finished(request, endpoint, RequestOutcome(success=True))
    router.on_endpoint_removed("10.0.0.7:8000")  # when discovery drops a pod

See docs/routing.md for each plugin's formula and parameters.
"""

from .base import Filter, PassThroughFilter, Picker, Plugin, Scorer, ShortlistScorer, Stateful
from .pool import EndpointPool
from .registry import PRESETS, REGISTRY, build_router
from .runner import Router
from .state import RoutingState
from .types import Decision, EndpointState, NoEndpointError, PluginContractError, RequestOutcome, RouteRequest

__all__ = [
    "PRESETS",
    "REGISTRY",
    "Decision",
    "EndpointPool",
    "EndpointState",
    "Filter",
    "NoEndpointError",
    "PassThroughFilter",
    "Picker",
    "Plugin",
    "PluginContractError",
    "RequestOutcome",
    "RouteRequest",
    "Router",
    "RoutingState",
    "Scorer",
    "ShortlistScorer",
    "Stateful",
    "build_router",
]
