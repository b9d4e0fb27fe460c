"""Tables for the filters: model-match and lora-affinity."""

from __future__ import annotations

import pytest

from runtime_components.gateway.policy.filters import LoraAffinityFilter, ModelMatchFilter

from .builders import MODEL, ep, req

LORA_CASES = [
    # (id, fallback, adapter, endpoint fields, expected kept endpoint numbers)
    ("no adapter keeps all", True, None, [{}, {"adapters": frozenset({"x"})}], [0, 1]),
    ("holders only", True, "x", [{"adapters": frozenset({"x"})}, {"max_loras": 4}, {"adapters": frozenset({"x", "y"})}], [0, 2]),
    ("fallback to free slots", True, "x", [{"adapters": frozenset({"y"}), "max_loras": 1}, {"adapters": frozenset({"y"}), "max_loras": 2}, {}], [1]),
    ("fallback none free", True, "x", [{"adapters": frozenset({"y"}), "max_loras": 1}, {}], []),
    ("fallback off", False, "x", [{"max_loras": 4}], []),
    ("fallback off holders", False, "x", [{"max_loras": 4}, {"adapters": frozenset({"x"})}], [1]),
]


@pytest.mark.parametrize(("fallback", "adapter", "fields", "kept"), [c[1:] for c in LORA_CASES], ids=[c[0] for c in LORA_CASES])
def test_lora_affinity_table(fallback: bool, adapter: str | None, fields: list[dict], kept: list[int]) -> None:
    endpoints = [ep(i, **f) for i, f in enumerate(fields)]
    result = LoraAffinityFilter(fallback).filter(req(adapter=adapter), endpoints)
    assert result == [endpoints[i] for i in kept]


@pytest.mark.parametrize(
    ("fallback", "message"),
    [
        (True, 'no endpoint holds adapter "sql" and none has a free adapter slot (max_loras) to load it'),
        (False, 'no endpoint holds adapter "sql" (loading fallback is off: allowLoadingFallback)'),
    ],
)
def test_lora_affinity_explains_empty(fallback: bool, message: str) -> None:
    assert LoraAffinityFilter(fallback).why_empty(req(adapter="sql")) == message


@pytest.mark.parametrize(
    ("models", "kept"),
    [
        ([MODEL, "other", ""], [0, 2]),  # empty model: the gateway did not learn it, keep
        (["other"], []),
        ([MODEL, MODEL], [0, 1]),
    ],
)
def test_model_match_table(models: list[str], kept: list[int]) -> None:
    endpoints = [ep(i, model=m) for i, m in enumerate(models)]
    assert ModelMatchFilter().filter(req(), endpoints) == [endpoints[i] for i in kept]
    assert ModelMatchFilter().why_empty(req()) == f'no endpoint serves model "{MODEL}"'
