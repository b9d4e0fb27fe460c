"""cache_key: DNS-label and file-name safe, deterministic, distinct for distinct URIs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibrix_spec.model_cache import cache_key

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("hf://Qwen/Qwen2.5-7B-Instruct@main", "qwen2-5-7b-instruct-main-05935d97e000"),
        ("s3://bucket/models/llama-3-8b/", "llama-3-8b-707e1d59add9"),
        ("s3://b", "b-cea59027f18e"),
        ("gs://b/@@@", "model-a55c8a11238e"),
    ],
)
def test_known_keys(uri: str, key: str) -> None:
    assert cache_key(uri) == key


def test_readable_part_is_the_last_component_cut_to_40() -> None:
    key = cache_key("s3://bucket/" + "A_very.Long" * 10)
    name, digest = key.rsplit("-", 1)
    assert len(name) <= 40 and not name.endswith("-")
    assert name.startswith("a-very-longa-very-long")
    assert re.fullmatch(r"[0-9a-f]{12}", digest)


def test_revision_changes_the_key() -> None:
    assert cache_key("hf://org/repo@v1") != cache_key("hf://org/repo@v2")
    assert cache_key("s3://a/model") != cache_key("s3://b/model")


@given(st.text(max_size=300))
def test_every_key_is_a_dns_label_and_a_file_name(uri: str) -> None:
    key = cache_key(uri)
    assert DNS_LABEL.match(key), key
    assert len(key) <= 53 and "/" not in key and key not in (".", "..")
    assert cache_key(uri) == key


@given(st.text(max_size=50), st.text(max_size=50))
def test_distinct_uris_get_distinct_keys(a: str, b: str) -> None:
    if a != b:
        assert cache_key(a) != cache_key(b)
