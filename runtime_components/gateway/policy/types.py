"""The values the gateway and the routing plugins exchange.

Where it sits: the gateway (ext_proc server) turns each request into a ``RouteRequest`` and
each discovered pod, with its latest scraped metrics and the gateway's own in-flight count,
into an ``EndpointState``; the router (``runner.Router``) picks one endpoint and returns a
``Decision``. When the request ends, the gateway reports a ``RequestOutcome``.

Unknown is ``None``: a metric the gateway has not scraped yet, or whose scrape is stale,
is ``None`` and plugins treat it as neutral, never as zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Decision",
    "EndpointState",
    "NoEndpointError",
    "PluginContractError",
    "RequestOutcome",
    "RouteRequest",
    "endpoint_load",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointState:
    """A read-only snapshot of one serving pod as the gateway sees it at routing time.

    The engine numbers are canonical (``aibrix_spec.engine_metrics``), whatever the engine:
    ``running``/``waiting`` requests (vLLM's ``vllm:num_requests_running``/``_waiting``,
    SGLang's ``sglang:num_running_reqs``/``num_queue_reqs``); ``kv_cache_usage`` (0..1);
    ``ttft_s``/``tpot_s`` recent mean time to first token / between output tokens;
    ``throughput_tps`` recent prompt+generation tokens per second; ``prefix_hit_ratio`` the
    engine's own prefix-cache hit ratio since the previous scrape (no built-in scorer reads
    it yet). ``inflight`` is the gateway's own count of requests it sent there
    that have not finished (always fresh). ``max_loras`` is the engine's adapter-slot limit
    (``None``: unknown, so the pod is not a loading target).
    """

    address: str
    pod: str = ""
    model: str = ""
    adapters: frozenset[str] = frozenset()
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    throughput_tps: float | None = None
    prefix_hit_ratio: float | None = None
    inflight: int = 0
    max_loras: int | None = None

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f'endpoint address "{self.address}" is not of the form ip:port (e.g. 10.0.0.7:8000)')
        if self.inflight < 0:
            raise ValueError(f"endpoint {self.address}: inflight must be >= 0, got {self.inflight}")


def endpoint_load(e: EndpointState) -> float:
    """Requests queued or running at ``e``: ``max(inflight, running + waiting)``."""
    if e.running is None and e.waiting is None:
        return float(e.inflight)
    return max(float(e.inflight), (e.running or 0.0) + (e.waiting or 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRequest:
    """What the router knows about one request.

    ``model`` is the base model the request resolved to; ``adapter`` the LoRA adapter name or
    ``None``; ``token_ids`` the prompt's ids from ``runtime_components.common.tokens.tokenize``;
    ``headers`` the request headers with lower-case keys. ``scratch`` is per-request memo
    space for plugins (the prefix scorer keeps the prompt's block hashes there so that
    scoring and ``on_routed`` hash the prompt once); the gateway leaves it alone.
    """

    model: str
    adapter: str | None = None
    token_ids: Sequence[int] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    session_id: str | None = None
    scratch: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestOutcome:
    """How a routed request ended, reported through ``Router.on_finished``.

    ``success`` is False when the endpoint failed the request (connection error, 5xx), so
    stateful plugins can forget what they assumed the endpoint now caches.
    """

    success: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The router's answer: the endpoint plus what the gateway may log or export.

    ``scores`` is the weighted total per candidate address (after filters);
    ``prefix_match`` the fraction of the prompt's full blocks the chosen endpoint was known
    to hold (``None`` when the policy has no prefix scorer or the prompt is shorter than one
    block), which feeds the gateway's prefix hit-ratio metric.
    """

    endpoint: EndpointState
    policy: str
    candidates: int
    scores: Mapping[str, float]
    prefix_match: float | None = None


class NoEndpointError(Exception):
    """No endpoint is eligible for the request; ``reason`` says why (the gateway answers 503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PluginContractError(RuntimeError):
    """A plugin broke the runner's contract (returned an endpoint it was not given); a bug."""
