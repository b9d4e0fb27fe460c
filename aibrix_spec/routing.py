"""Routing policy parameters: the spec side of the gateway's plugins.

A model's ``routing.policy`` is either the name of a built-in policy
(``least-request``) or a weighted combination written as
``name[:weight],name[:weight]`` (``prefix-cache-aware:2,least-request``). A single name
selects that built-in preset; several terms form a custom profile in which scorers keep
their weights, a filter term adds the filter and a picker term (at most one, no weight)
replaces the default max-score picker (``PLUGIN_KINDS`` says which is which). Each
plugin's parameters live here, so the compiler validates them and ``schemas/``
documents them without importing the gateway.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ._base import SpecModel

__all__ = [
    "PLUGIN_KINDS",
    "POLICY_NAMES",
    "ROUTING_POLICY_HEADER",
    "LeastLatencyParams",
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

#: What each plugin is in a weighted combination: a scorer (weighted), a filter or a picker.
PLUGIN_KINDS: dict[str, str] = {
    "random": "picker",
    "least-request": "scorer",
    "least-kv-cache": "scorer",
    "least-latency": "scorer",
    "throughput": "scorer",
    "prefix-cache-aware": "scorer",
    "power-of-two": "picker",
    "session-affinity": "scorer",
    "lora-affinity": "filter",
}

#: The request header that may name another policy when ``allowHeaderOverride`` is true.
ROUTING_POLICY_HEADER = "x-routing-policy"

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
        if PLUGIN_KINDS[name] != "scorer" and weight != 1.0:
            raise ValueError(f'"{name}" is a {PLUGIN_KINDS[name]}, not a scorer; it takes no weight (write "{name}")')
        terms.append((name, weight))
    pickers = [n for n, _ in terms if PLUGIN_KINDS[n] == "picker"]
    if len(pickers) > 1:
        raise ValueError(f"a policy has one picker, got {' and '.join(pickers)}; keep one of them")
    if "random" in pickers and any(PLUGIN_KINDS[n] == "scorer" for n, _ in terms):
        raise ValueError('the "random" picker ignores scores; drop the scorers or use power-of-two')
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
    index: Literal["decisions", "kv-events"] = Field(
        "decisions",
        description=(
            "What the prefix index records. decisions: the gateway's own routing decisions (no engine "
            "support needed; it cannot see evictions). kv-events: the blocks engines report holding, from "
            "their KV-cache events (vLLM --kv-events-config, or the simulated engine); a routing decision "
            "then only counts as a provisional entry until the engine's events arrive."
        ),
    )
    provisional_ttl_s: Annotated[float, Field(gt=0, le=600)] = Field(
        2.0,
        description=(
            "kv-events only: seconds a routing decision counts as the engine holding the prompt's blocks, "
            "so a burst of one new prefix does not scatter before the engine reports them."
        ),
    )


class SessionAffinityParams(SpecModel):
    """Parameters of the session-affinity scorer."""

    header: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")] = Field(
        "x-session-id", description="Request header (lower-case) that names the session."
    )
    max_sessions: Annotated[int, Field(ge=1)] = Field(
        100_000, description="Most sessions remembered; the least recently used are forgotten first."
    )


class LeastLatencyParams(SpecModel):
    """Parameters of the least-latency scorer."""

    expected_output_tokens: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        128,
        description="Output tokens assumed per request when estimating latency as ttft + tpot x this.",
    )


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
    least_latency: LeastLatencyParams = Field(
        default_factory=LeastLatencyParams, description="Parameters of least-latency."
    )


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

    def with_policy(self, policy: str) -> RoutingSpec:
        """Return a validated copy using ``policy`` (e.g. from the x-routing-policy header).

        Raises pydantic's ``ValidationError`` (a ``ValueError``) when ``policy`` is invalid.
        """
        return RoutingSpec.model_validate({**self.model_dump(), "policy": policy})
