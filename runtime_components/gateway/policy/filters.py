"""Filters: model-match and lora-affinity. Both always run first, whatever the policy.

Where it sits: the first steps of every ``Profile`` (``registry`` prepends them), because
routing a request to a pod that cannot serve it is an error, not a preference.

- model-match: keeps endpoints whose ``model`` is the request's base model; an endpoint
  with an empty ``model`` (the gateway did not learn it) is kept.
- lora-affinity: for a request naming an adapter, keeps the endpoints that hold it. When
  none does and loading fallback is allowed, keeps the endpoints with a free adapter slot
  (``len(adapters) < max_loras``) so the engine can load it on first use; the scorers then
  choose among them. Requests without an adapter pass untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .types import EndpointState, RouteRequest

if TYPE_CHECKING:
    from .pool import EndpointPool

__all__ = ["LoraAffinityFilter", "ModelMatchFilter"]


class ModelMatchFilter:
    """Keeps endpoints serving the request's base model."""

    name = "model-match"

    def filter(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> list[EndpointState]:
        return [e for e in endpoints if e.model in ("", req.model)]

    def why_empty(self, req: RouteRequest) -> str:
        return f'no endpoint serves model "{req.model}"'

    def passes_all(self, req: RouteRequest, pool: EndpointPool) -> bool:
        return pool.serves_only(req.model)


class LoraAffinityFilter:
    """Keeps endpoints holding the request's adapter, else (optionally) those able to load it."""

    name = "lora-affinity"

    def __init__(self, allow_loading_fallback: bool) -> None:
        self._fallback = allow_loading_fallback

    def filter(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> list[EndpointState]:
        if req.adapter is None:
            return list(endpoints)
        holders = [e for e in endpoints if req.adapter in e.adapters]
        if holders or not self._fallback:
            return holders
        return [e for e in endpoints if e.max_loras is not None and len(e.adapters) < e.max_loras]

    def passes_all(self, req: RouteRequest, pool: EndpointPool) -> bool:
        return req.adapter is None

    def why_empty(self, req: RouteRequest) -> str:
        if self._fallback:
            return f'no endpoint holds adapter "{req.adapter}" and none has a free adapter slot (max_loras) to load it'
        return f'no endpoint holds adapter "{req.adapter}" (loading fallback is off: allowLoadingFallback)'
