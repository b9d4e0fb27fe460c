"""The contract every registry entry keeps, and how policy strings become profiles."""

from __future__ import annotations

import random

import pytest

from aibrix_spec.routing import POLICY_NAMES, PolicyParameters, RoutingSpec
from runtime_components.gateway.policy import (
    PRESETS,
    REGISTRY,
    Filter,
    NoEndpointError,
    Picker,
    Scorer,
    Stateful,
    build_router,
)
from runtime_components.gateway.policy.pickers import MaxScorePicker
from runtime_components.gateway.policy.registry import ProfileConfig, profile_config
from runtime_components.gateway.policy.runner import Profile, Router
from runtime_components.gateway.policy.state import StateScope

from .builders import random_endpoints, random_request

SEEDS = range(6)


def build(name: str, seed: int = 0):
    return REGISTRY[name](PolicyParameters(), random.Random(seed), StateScope())


def router_around(name: str, seed: int) -> Router:
    """A router in which the plugin ``name`` is the only filter, scorer or picker."""
    plugin = build(name, seed)
    default_picker = MaxScorePicker(random.Random(seed))
    return Router(
        Profile(
            name=name,
            filters=(plugin,) if isinstance(plugin, Filter) else (),
            scorers=((plugin, 1.0),) if isinstance(plugin, Scorer) else (),
            picker=plugin if isinstance(plugin, Picker) else default_picker,
        )
    )


def test_registry_covers_every_policy_name() -> None:
    assert set(POLICY_NAMES) <= set(REGISTRY)
    assert set(PRESETS) == set(POLICY_NAMES)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_has_its_name_and_one_role(name: str) -> None:
    plugin = build(name)
    assert plugin.name == name
    roles = [role for role in (Filter, Scorer, Picker) if isinstance(plugin, role)]
    assert len(roles) == 1, roles


@pytest.mark.parametrize("n", [0, 1, 2, 5])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_contract(name: str, n: int) -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        endpoints = random_endpoints(rng, n)
        addresses = {e.address for e in endpoints}
        plugin = build(name, seed)
        request = random_request(rng)
        if isinstance(plugin, Filter):
            kept = plugin.filter(request, endpoints)
            assert {e.address for e in kept} <= addresses
            assert isinstance(plugin.why_empty(request), str) and plugin.why_empty(request)
        if isinstance(plugin, Scorer):
            scores = plugin.score(request, endpoints)
            assert set(scores) <= addresses
            assert all(0.0 <= s <= 1.0 for s in scores.values()), scores
        if isinstance(plugin, Picker) and endpoints:
            assert plugin.pick(request, [(e, rng.random()) for e in endpoints]) in endpoints


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_in_a_router_handles_zero_and_one_candidate(name: str) -> None:
    router = router_around(name, 0)
    with pytest.raises(NoEndpointError, match="no ready endpoint serves model"):
        router.pick(random_request(random.Random(0)), [])
    one = random_endpoints(random.Random(1), 1)
    plain = random_request(random.Random(2))
    request = type(plain)(model=plain.model, token_ids=plain.token_ids)  # no adapter: one pod always qualifies
    assert router.pick(request, one) == one[0]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_same_seed_same_picks(name: str) -> None:
    def run(seed: int) -> list[str]:
        router = router_around(name, seed)
        rng = random.Random(99)
        picks = []
        for _ in range(40):
            endpoints = random_endpoints(rng, 6)
            request = random_request(rng)
            try:
                chosen = router.pick(request, endpoints)
            except NoEndpointError as error:
                picks.append(error.reason)
                continue
            router.on_routed(request, chosen)
            picks.append(chosen.address)
        return picks

    assert run(11) == run(11)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("least-request", PRESETS["least-request"]),
        ("least-request:3", PRESETS["least-request"]),
        ("prefix-cache-aware", ProfileConfig(scorers=(("prefix-cache-aware", 2.0), ("least-request", 1.0)))),
        ("prefix-cache-aware:2,least-request", ProfileConfig(scorers=(("prefix-cache-aware", 2.0), ("least-request", 1.0)))),
        ("least-kv-cache,least-request:0.5", ProfileConfig(scorers=(("least-kv-cache", 1.0), ("least-request", 0.5)))),
        ("lora-affinity,least-latency,power-of-two", ProfileConfig(("lora-affinity",), (("least-latency", 1.0),), "power-of-two")),
        ("session-affinity:4,throughput", ProfileConfig(scorers=(("session-affinity", 4.0), ("throughput", 1.0)))),
        ("lora-affinity,random", ProfileConfig(filters=("lora-affinity",), picker="random")),
    ],
)
def test_profile_config_table(policy: str, expected: ProfileConfig) -> None:
    assert profile_config(policy) == expected


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_preset_builds_with_model_and_adapter_filters_first(policy: str) -> None:
    router = build_router(RoutingSpec(policy=policy), rng=random.Random(0))
    assert [f.name for f in router.profile.filters][:2] == ["model-match", "lora-affinity"]
    assert len({id(p) for p in router.profile.plugins()}) == len(router.profile.plugins())


def test_stateful_plugins_are_the_ones_with_memory() -> None:
    stateful = sorted(name for name in REGISTRY if isinstance(build(name), Stateful))
    assert stateful == ["prefix-cache-aware", "session-affinity"]
