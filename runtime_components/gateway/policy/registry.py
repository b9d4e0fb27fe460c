"""The one registry of plugin types, the built-in policies written as data, and ``build_router``.

Where it sits: between the spec and the runner. ``build_router(spec, rng=...)`` parses
``spec.policy`` (``aibrix_spec.routing.parse_policy``), turns it into a ``ProfileConfig``
(plain data: filter names, (scorer name, weight) pairs, a picker name), instantiates each
named plugin once from ``REGISTRY`` with the spec's parameters, and returns a ``Router``.

A policy string is read in one of two ways:

- a single name selects the built-in preset of that name from ``PRESETS`` (a lone term's
  weight changes nothing);
- several terms form a custom profile: scorers keep their weights, a filter term adds that
  filter, a picker term replaces the default ``max-score`` picker.

``ALWAYS_FILTERS`` (model-match, lora-affinity) run first in every profile: sending a
request to a pod without its model or adapter is never a preference to trade off.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aibrix_spec.routing import PLUGIN_KINDS, PolicyParameters, RoutingSpec, parse_policy

from .base import Filter, Picker, Plugin, Scorer
from .filters import LoraAffinityFilter, ModelMatchFilter
from .load import LeastKvCacheScorer, LeastLatencyScorer, LeastRequestScorer, ThroughputScorer
from .pickers import MaxScorePicker, PowerOfTwoPicker, RandomPicker
from .prefix import PrefixCacheAwareScorer
from .runner import Profile, Router
from .session import SessionAffinityScorer
from .state import RoutingState, StateScope

__all__ = ["ALWAYS_FILTERS", "PRESETS", "REGISTRY", "ProfileConfig", "build_router", "profile_config"]

PluginFactory = Callable[[PolicyParameters, random.Random, StateScope], Plugin]

#: Every plugin type, by its kebab-case name, with the factory that builds it from the spec's parameters.
REGISTRY: dict[str, PluginFactory] = {
    "model-match": lambda p, rng, st: ModelMatchFilter(),
    "lora-affinity": lambda p, rng, st: LoraAffinityFilter(p.lora_affinity.allow_loading_fallback),
    "least-request": lambda p, rng, st: LeastRequestScorer(),
    "least-kv-cache": lambda p, rng, st: LeastKvCacheScorer(),
    "least-latency": lambda p, rng, st: LeastLatencyScorer(p.least_latency.expected_output_tokens),
    "throughput": lambda p, rng, st: ThroughputScorer(),
    "prefix-cache-aware": lambda p, rng, st: PrefixCacheAwareScorer(
        p.prefix_cache_aware.block_size_tokens,
        p.prefix_cache_aware.max_index_blocks,
        p.prefix_cache_aware.imbalance_threshold,
        # kv-events: the event-fed index is the model's own (set by the gateway), never shared state
        index=(st.prefix_index(p.prefix_cache_aware.block_size_tokens, p.prefix_cache_aware.max_index_blocks)
               if p.prefix_cache_aware.index == "decisions" else None),
        index_mode=p.prefix_cache_aware.index,
        provisional_ttl_s=p.prefix_cache_aware.provisional_ttl_s,
    ),
    "session-affinity": lambda p, rng, st: SessionAffinityScorer(
        p.session_affinity.header,
        p.session_affinity.max_sessions,
        table=st.session_table(p.session_affinity.header, p.session_affinity.max_sessions),
    ),
    "max-score": lambda p, rng, st: MaxScorePicker(rng),
    "random": lambda p, rng, st: RandomPicker(rng),
    "power-of-two": lambda p, rng, st: PowerOfTwoPicker(rng, p.power_of_two.choices),
}


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """A policy as data: filter names (after ``ALWAYS_FILTERS``), weighted scorer names, a picker name."""

    filters: tuple[str, ...] = ()
    scorers: tuple[tuple[str, float], ...] = ()
    picker: str = "max-score"


ALWAYS_FILTERS: tuple[str, ...] = ("model-match", "lora-affinity")

#: The built-in policies. Affinity scorers get weight 2 against least-request's 1 so that
#: a full match always wins while load only breaks ties and picks for new prefixes/sessions.
PRESETS: dict[str, ProfileConfig] = {
    "random": ProfileConfig(picker="random"),
    "least-request": ProfileConfig(scorers=(("least-request", 1.0),)),
    "least-kv-cache": ProfileConfig(scorers=(("least-kv-cache", 1.0),)),
    "least-latency": ProfileConfig(scorers=(("least-latency", 1.0),)),
    "throughput": ProfileConfig(scorers=(("throughput", 1.0),)),
    "prefix-cache-aware": ProfileConfig(scorers=(("prefix-cache-aware", 2.0), ("least-request", 1.0))),
    "power-of-two": ProfileConfig(scorers=(("least-request", 1.0),), picker="power-of-two"),
    "session-affinity": ProfileConfig(scorers=(("session-affinity", 2.0), ("least-request", 1.0))),
    "lora-affinity": ProfileConfig(filters=("lora-affinity",), scorers=(("least-request", 1.0),)),
}


def profile_config(policy: str) -> ProfileConfig:
    """Read a policy string as a preset (one name) or a custom profile (several terms)."""
    terms = parse_policy(policy)
    if len(terms) == 1:
        return PRESETS[terms[0][0]]
    filters = tuple(n for n, _ in terms if PLUGIN_KINDS[n] == "filter")
    scorers = tuple((n, w) for n, w in terms if PLUGIN_KINDS[n] == "scorer")
    pickers = [n for n, _ in terms if PLUGIN_KINDS[n] == "picker"]
    return ProfileConfig(filters=filters, scorers=scorers, picker=pickers[0] if pickers else "max-score")


def build_router(
    spec: RoutingSpec,
    *,
    rng: random.Random,
    shortlist_size: int = 4,
    state: RoutingState | None = None,
    scope: str = "",
) -> Router:
    """Build the router for ``spec``; plugins draw randomness only from ``rng``.

    ``state`` (with ``scope``, the model's name) supplies the prefix index and session table,
    shared by every router built from the same state for the same model; without it each
    router keeps private state. ``shortlist_size``: see ``Router``.

    >>> import random
    >>> router = build_router(RoutingSpec(policy="prefix-cache-aware:2,least-request"), rng=random.Random(0))
    >>> router.policy
    'prefix-cache-aware:2,least-request'
    """
    config = profile_config(spec.policy)
    built: dict[str, Plugin] = {}
    scoped = StateScope(state, scope)

    def instance(name: str) -> Plugin:
        if name not in built:
            built[name] = REGISTRY[name](spec.parameters, rng, scoped)
        return built[name]

    filter_names = list(dict.fromkeys((*ALWAYS_FILTERS, *config.filters)))
    filters = tuple(cast(Filter, _in_role(instance(n), Filter, n)) for n in filter_names)
    scorers = tuple((cast(Scorer, _in_role(instance(n), Scorer, n)), w) for n, w in config.scorers)
    picker = cast(Picker, _in_role(instance(config.picker), Picker, config.picker))
    return Router(Profile(name=spec.policy, filters=filters, scorers=scorers, picker=picker), shortlist_size=shortlist_size)


def _in_role(plugin: Plugin, role: type, name: str) -> Plugin:
    # A registry mistake (a scorer name in the picker slot), not a user error: the spec's
    # PLUGIN_KINDS already rejected misplaced names.
    if not isinstance(plugin, role):
        raise TypeError(f'plugin "{name}" cannot serve as a {role.__name__}')
    return plugin
