"""Routing policy parameters: the spec side of the gateway's plugins.

A model's ``routing.policy`` is either the name of a built-in policy
(``least-request``) or a weighted combination of scorers written as
``name[:weight],name[:weight]`` (``prefix-cache-aware:2,least-request``). Each
plugin's parameters live here, so the compiler validates them and ``schemas/``
documents them without importing the gateway.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from ._base import SpecModel

__all__ = [
    "POLICY_NAMES",
    "RoutingSpec",
    "PolicyParameters",
    "PrefixCacheAwareParams",
    "SessionAffinityParams",
    "LoraAffinityParams",
    "PowerOfTwoParams",
    "parse_policy",
]

#: Every routing policy (and scorer) type the gateway registers, in kebab-case as in YAML.
POLICY_NAMES: tuple[str, ...] = (
    "random",
    "least-request",
    "least-kv-cache",
    "least-latency",
    "throughput",
    "prefix-cache-aware",
    "power-of-two",
    "session-affinity",
    "lora-affinity",
)

_TERM = re.compile(r"^\s*([a-z][a-z0-9-]*)\s*(?::\s*([0-9]+(?:\.[0-9]+)?)\s*)?$")


def parse_policy(text: str) -> tuple[tuple[str, float], ...]:
    """Split a policy string into (name, weight) terms; raise ValueError with a clear reason.

    >>> parse_policy("prefix-cache-aware:2,least-request")
    (('prefix-cache-aware', 2.0), ('least-request', 1.0))
    """
    if not text or not text.strip():
        raise ValueError("the policy is empty; expected a policy name such as least-request")
    terms: list[tuple[str, float]] = []
    for raw in text.split(","):
        m = _TERM.match(raw)
        if not m:
            raise ValueError(f'"{raw.strip()}" is not of the form name or name:weight')
        name, weight = m.group(1), float(m.group(2) or 1.0)
        if name not in POLICY_NAMES:
            raise ValueError(f'unknown routing policy "{name}"; expected one of: {", ".join(POLICY_NAMES)}')
        if weight <= 0:
            raise ValueError(f'the weight of "{name}" must be greater than 0')
        if any(n == name for n, _ in terms):
            raise ValueError(f'"{name}" appears twice in the policy')
        terms.append((name, weight))
    return tuple(terms)


class PrefixCacheAwareParams(SpecModel):
    """Parameters of the prefix-cache-aware scorer."""

    block_size_tokens: Annotated[int, Field(ge=1, le=1024)] = Field(
        16, description="Tokens per hashed prompt block; match the engine's KV block size."
    )
    max_index_blocks: Annotated[int, Field(ge=1024)] = Field(
        1_000_000, description="Most (block hash, endpoint) entries the prefix index keeps before evicting the oldest."
    )
    imbalance_threshold: Annotated[int, Field(ge=1)] = Field(
        8,
        description=(
            "When the busiest candidate runs this many more requests than the idlest, "
            "prefix affinity yields to load (the load-imbalance guard)."
        ),
    )


class SessionAffinityParams(SpecModel):
    """Parameters of the session-affinity scorer."""

    header: str = Field("x-session-id", description="Request header that names the session.")


class LoraAffinityParams(SpecModel):
    """Parameters of the lora-affinity filter."""

    allow_loading_fallback: bool = Field(
        True,
        description="When no pod holds the adapter, route to the least-loaded pod able to load it instead of failing.",
    )


class PowerOfTwoParams(SpecModel):
    """Parameters of the power-of-two-choices picker."""

    choices: Annotated[int, Field(ge=2, le=8)] = Field(2, description="How many random candidates to compare.")


class PolicyParameters(SpecModel):
    """Per-plugin parameters; a plugin not named here uses its defaults."""

    prefix_cache_aware: PrefixCacheAwareParams = Field(
        default_factory=PrefixCacheAwareParams, description="Parameters of prefix-cache-aware."
    )
    session_affinity: SessionAffinityParams = Field(
        default_factory=SessionAffinityParams, description="Parameters of session-affinity."
    )
    lora_affinity: LoraAffinityParams = Field(
        default_factory=LoraAffinityParams, description="Parameters of lora-affinity."
    )
    power_of_two: PowerOfTwoParams = Field(default_factory=PowerOfTwoParams, description="Parameters of power-of-two.")


class RoutingSpec(SpecModel):
    """How the gateway picks a pod for this model's requests."""

    policy: str = Field(
        "least-request",
        description=(
            "A built-in policy name, or weighted scorers as name[:weight],... "
            "(e.g. prefix-cache-aware:2,least-request)."
        ),
    )
    parameters: PolicyParameters = Field(
        default_factory=PolicyParameters, description="Per-plugin parameters."
    )
    allow_header_override: bool = Field(
        False, description="Let a request choose another policy with the x-routing-policy header."
    )

    @field_validator("policy")
    @classmethod
    def _check_policy(cls, value: str) -> str:
        parse_policy(value)
        return value
