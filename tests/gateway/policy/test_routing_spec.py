"""aibrix_spec.routing: the policy grammar and the plugin parameters the compiler validates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aibrix_spec.routing import ROUTING_POLICY_HEADER, RoutingSpec, parse_policy


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("least-request", (("least-request", 1.0),)),
        (" prefix-cache-aware : 2 , least-request ", (("prefix-cache-aware", 2.0), ("least-request", 1.0))),
        ("least-kv-cache:0.5,power-of-two", (("least-kv-cache", 0.5), ("power-of-two", 1.0))),
        ("lora-affinity,random", (("lora-affinity", 1.0), ("random", 1.0))),
    ],
)
def test_parse_policy_accepts(text: str, terms: tuple) -> None:
    assert parse_policy(text) == terms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the policy is empty; expected a policy name such as least-request"),
        ("least_request", '"least_request" is not of the form name or name:weight'),
        ("fastest", 'unknown routing policy "fastest"; expected one of: random, least-request,'),
        ("least-request:0", 'the weight of "least-request" must be greater than 0'),
        ("least-request,least-request:2", '"least-request" appears twice in the policy'),
        ("power-of-two:2", '"power-of-two" is a picker, not a scorer; it takes no weight (write "power-of-two")'),
        ("lora-affinity:3", '"lora-affinity" is a filter, not a scorer; it takes no weight'),
        ("random,power-of-two", "a policy has one picker, got random and power-of-two; keep one of them"),
        ("random,least-request", 'the "random" picker ignores scores; drop the scorers or use power-of-two'),
    ],
)
def test_parse_policy_rejects_with_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_policy(text)
    assert str(info.value).startswith(message)


def test_spec_reads_camel_case_parameters() -> None:
    spec = RoutingSpec.model_validate(
        {
            "policy": "prefix-cache-aware:2,least-request",
            "parameters": {
                "prefixCacheAware": {"blockSizeTokens": 32, "imbalanceThreshold": 4},
                "sessionAffinity": {"header": "x-conversation", "maxSessions": 10},
                "powerOfTwo": {"choices": 3},
                "leastLatency": {"expectedOutputTokens": 256},
                "loraAffinity": {"allowLoadingFallback": False},
            },
            "allowHeaderOverride": True,
        }
    )
    p = spec.parameters
    assert (p.prefix_cache_aware.block_size_tokens, p.prefix_cache_aware.imbalance_threshold) == (32, 4)
    assert (p.session_affinity.header, p.power_of_two.choices, p.least_latency.expected_output_tokens) == ("x-conversation", 3, 256)
    assert p.lora_affinity.allow_loading_fallback is False and spec.allow_header_override


@pytest.mark.parametrize(
    ("data", "location", "fragment"),
    [
        ({"policy": "fastest"}, ("policy",), 'unknown routing policy "fastest"'),
        ({"parameters": {"powerOfTwo": {"choices": 1}}}, ("parameters", "powerOfTwo", "choices"), "greater than or equal to 2"),
        ({"parameters": {"prefixCacheAware": {"blockSizeTokens": 0}}}, ("parameters", "prefixCacheAware", "blockSizeTokens"), "greater than or equal to 1"),
        ({"parameters": {"sessionAffinity": {"header": "X-Session"}}}, ("parameters", "sessionAffinity", "header"), "should match pattern"),
        ({"parameters": {"prefixCache": {}}}, ("parameters", "prefixCache"), "Extra inputs are not permitted"),
    ],
)
def test_spec_rejects_bad_parameters(data: dict, location: tuple, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        RoutingSpec.model_validate(data)
    errors = info.value.errors()
    assert errors[0]["loc"] == location
    assert fragment in errors[0]["msg"]


def test_with_policy_validates_and_keeps_parameters() -> None:
    spec = RoutingSpec.model_validate({"parameters": {"powerOfTwo": {"choices": 4}}, "allowHeaderOverride": True})
    assert spec.with_policy("power-of-two").parameters.power_of_two.choices == 4
    assert spec.with_policy("power-of-two").allow_header_override
    with pytest.raises(ValidationError, match='unknown routing policy "nope"'):
        spec.with_policy("nope")
    assert ROUTING_POLICY_HEADER == "x-routing-policy"
