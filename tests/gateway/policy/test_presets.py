"""Each built-in policy end to end through build_router: what it prefers, in one table."""

from __future__ import annotations

import random

import pytest

from aibrix_spec.routing import RoutingSpec
from runtime_components.gateway.policy import build_router

from .builders import ep, req

PROMPT = list(range(200, 264))  # four 16-token blocks
OTHER = list(range(900, 964))

# Endpoint 1 is idle; endpoint 2 is busier but best on every other metric, and was sent PROMPT before.
IDLE = ep(1, running=0, kv_cache_usage=0.9, ttft_s=0.5, tpot_s=0.05, throughput_tps=4000.0)
WARM = ep(2, running=3, kv_cache_usage=0.2, ttft_s=0.1, tpot_s=0.02, throughput_tps=500.0, adapters=frozenset({"sql"}))
HOT = ep(2, running=30, kv_cache_usage=0.2, adapters=frozenset({"sql"}))  # beyond the imbalance guard

CASES = [
    # (id, policy, endpoints, request fields, expected address of the pick)
    ("least-request picks idle", "least-request", [IDLE, WARM], {}, IDLE.address),
    ("least-kv-cache picks free cache", "least-kv-cache", [IDLE, WARM], {}, WARM.address),
    ("least-latency picks fast", "least-latency", [IDLE, WARM], {}, WARM.address),
    ("throughput picks headroom", "throughput", [IDLE, WARM], {}, WARM.address),
    ("prefix follows its prefix", "prefix-cache-aware", [IDLE, WARM], {"token_ids": PROMPT}, WARM.address),
    ("prefix new prompt is least-request", "prefix-cache-aware", [IDLE, WARM], {"token_ids": OTHER}, IDLE.address),
    ("prefix guard yields to load", "prefix-cache-aware", [IDLE, HOT], {"token_ids": PROMPT}, IDLE.address),
    ("session sticks", "session-affinity", [IDLE, WARM], {"session_id": "s"}, WARM.address),
    ("new session is least-request", "session-affinity", [IDLE, WARM], {"session_id": "new"}, IDLE.address),
    ("lora goes to holder", "lora-affinity", [IDLE, WARM], {"adapter": "sql"}, WARM.address),
    ("power-of-two of two is best", "power-of-two", [IDLE, WARM], {}, IDLE.address),
    ("weighted: kv outweighs load", "least-kv-cache:3,least-request", [IDLE, WARM], {}, WARM.address),
    ("weighted: load outweighs kv", "least-kv-cache:0.1,least-request", [IDLE, WARM], {}, IDLE.address),
]


@pytest.mark.parametrize(("policy", "endpoints", "fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preset_prefers(policy: str, endpoints: list, fields: dict, expected: str) -> None:
    for seed in range(5):
        router = build_router(RoutingSpec(policy=policy), rng=random.Random(seed))
        # History: PROMPT and session "s" were sent to endpoint 2 earlier.
        router.on_routed(req(token_ids=PROMPT, session_id="s"), WARM)
        assert router.pick(req(**fields), endpoints).address == expected


def test_random_spreads_over_everyone() -> None:
    router = build_router(RoutingSpec(policy="random"), rng=random.Random(4))
    endpoints = [ep(i, running=i * 10) for i in range(4)]
    assert {router.pick(req(), endpoints).address for _ in range(100)} == {e.address for e in endpoints}
