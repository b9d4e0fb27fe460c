"""Small builders shared by the routing-policy tests."""

from __future__ import annotations

import random

from runtime_components.gateway.policy import EndpointState, RouteRequest

MODEL = "llama-3-8b"


def ep(i: int, **fields: object) -> EndpointState:
    """Endpoint number ``i`` (address 10.0.0.i:8000) serving MODEL, with the given fields."""
    fields.setdefault("model", MODEL)
    fields.setdefault("pod", f"pod-{i}")
    return EndpointState(address=f"10.0.0.{i}:8000", **fields)  # type: ignore[arg-type]


def req(**fields: object) -> RouteRequest:
    """A request for MODEL with the given fields."""
    fields.setdefault("model", MODEL)
    return RouteRequest(**fields)  # type: ignore[arg-type]


def random_endpoints(rng: random.Random, n: int) -> list[EndpointState]:
    """``n`` endpoints with random metrics, some of them unknown (None)."""

    def maybe(value: float) -> float | None:
        return None if rng.random() < 0.2 else value

    return [
        ep(
            i,
            adapters=frozenset(rng.sample(["a", "b", "c"], rng.randint(0, 2))),
            running=maybe(rng.randint(0, 20)),
            waiting=maybe(rng.randint(0, 5)),
            kv_cache_usage=maybe(rng.random()),
            ttft_s=maybe(rng.uniform(0.01, 2.0)),
            tpot_s=maybe(rng.uniform(0.005, 0.1)),
            throughput_tps=maybe(rng.uniform(0, 5000)),
            inflight=rng.randint(0, 20),
            max_loras=rng.choice([None, 2, 4]),
        )
        for i in range(n)
    ]


def random_request(rng: random.Random) -> RouteRequest:
    """A request whose prompt shares a prefix with others, sometimes with a session or adapter."""
    prefix = [rng.randint(0, 3)] * 32
    return req(
        token_ids=prefix + [rng.randint(0, 31999) for _ in range(rng.randint(0, 40))],
        session_id=rng.choice([None, "s1", "s2"]),
        adapter=rng.choice([None, None, "a"]),
    )
