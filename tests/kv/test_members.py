"""Rendezvous placement and member sources (static, DNS with an injected resolver and clock)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from aibrix_spec.components.kv import MembersConfig
from runtime_components.kv.members import DnsMembers, StaticMembers, member_seed, mix64, owner, rank, source_from_config


def seeded(names):
    return [(n, member_seed(n)) for n in names]


def test_mix64_is_a_deterministic_64_bit_permutation_sample():
    values = [mix64(i) for i in range(10000)]
    assert len(set(values)) == 10000 and all(0 <= v < 2**64 for v in values)
    assert mix64(12345) == mix64(12345)


def test_rendezvous_spreads_keys_evenly():
    members = seeded([f"10.0.0.{i}:9600" for i in range(4)])
    rng = random.Random(1)
    counts = Counter(owner(rng.getrandbits(64), members) for _ in range(20000))
    assert len(counts) == 4 and max(counts.values()) / min(counts.values()) < 1.1


def test_a_member_leaving_moves_only_its_own_keys():
    names = [f"10.0.0.{i}:9600" for i in range(5)]
    rng = random.Random(2)
    keys = [rng.getrandbits(64) for _ in range(5000)]
    before = {k: owner(k, seeded(names)) for k in keys}
    after = {k: owner(k, seeded(names[:2] + names[3:])) for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == names[2]}
    assert all(after[k] == rank(k, seeded(names))[1] for k in moved)  # each to its runner-up


def test_dns_members_refresh_and_keep_the_last_answer_on_failure():
    answers = [["10.0.0.2", "10.0.0.1"], OSError("SERVFAIL"), ["fd00::5"]]
    now = [0.0]
    calls = []

    async def resolver(name, port):
        calls.append((name, port))
        answer = answers[len(calls) - 1]
        if isinstance(answer, Exception):
            raise answer
        return sorted(answer)

    async def main():
        source = DnsMembers("kv.llm.svc", 9600, 10.0, resolver=resolver, clock=lambda: now[0])
        assert await source.members() == ["10.0.0.1:9600", "10.0.0.2:9600"]
        now[0] = 5.0
        assert await source.members() == ["10.0.0.1:9600", "10.0.0.2:9600"] and len(calls) == 1  # cached
        now[0] = 10.0
        assert await source.members() == ["10.0.0.1:9600", "10.0.0.2:9600"] and source.failures == 1
        now[0] = 20.0
        assert await source.members() == ["[fd00::5]:9600"]
        assert calls == [("kv.llm.svc", 9600)] * 3

    asyncio.run(main())


def test_dns_members_resolve_localhost_for_real():
    source = DnsMembers("localhost", 9600, 10.0)
    members = asyncio.run(source.members())
    assert "127.0.0.1:9600" in members or "[::1]:9600" in members


@pytest.mark.parametrize(
    ("config", "kind"),
    [({"source": "static", "static": ["a:1"]}, StaticMembers), ({"source": "dns", "dnsName": "kv.svc"}, DnsMembers)],
)
def test_source_from_config(config, kind):
    assert isinstance(source_from_config(MembersConfig.model_validate(config)), kind)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"source": "static"}, "source static needs at least one `host:port` under `static`"),
        ({"source": "dns"}, "source dns needs `dnsName` (the pool's headless Service, e.g. kv.llm.svc)"),
        ({"source": "static", "static": ["nohost"]}, "static[0] = 'nohost' is not `host:port` (e.g. 10.0.0.7:9600)"),
        ({"source": "static", "static": ["a:1", "a:1"]}, "static lists a member twice"),
    ],
)
def test_bad_member_configs(config, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        MembersConfig.model_validate(config)
