"""The connector's roles (vLLM's ``kv_role``) in its scheduler half: pure logic, no vLLM, no pool.

A dict stands in for the pool's prefix index. Block size 4; the fakes carry only the fields
the scheduler reads from vLLM's Request / NewRequestData / SchedulerOutput.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import pytest

from runtime_components.common.hashing import block_hashes
from runtime_components.kv.connector_logic import KV_ROLES, ConnectorRole, PoolConnectorScheduler

BLOCK = 4
SALT = "tiny"


class PrefixIndex:
    """The pool as the scheduler sees it: which keys it holds."""

    def __init__(self, held: Sequence[int] = ()) -> None:
        self.held = set(held)
        self.lookups = 0

    def lookup_prefix(self, keys: Sequence[int]) -> int:
        self.lookups += 1
        n = 0
        while n < len(keys) and keys[n] in self.held:
            n += 1
        return n


def request(req_id: str, n_tokens: int, start: int = 100):
    return types.SimpleNamespace(request_id=req_id, prompt_token_ids=list(range(start, start + n_tokens)),
                                 lora_request=None)


def keys_of(req) -> list[int]:
    return block_hashes(req.prompt_token_ids, BLOCK, SALT)


def step(req, block_ids: list[int], computed: int, scheduled: int):
    new = types.SimpleNamespace(req_id=req.request_id, prompt_token_ids=req.prompt_token_ids, block_ids=(block_ids,),
                                num_computed_tokens=computed, lora_request=None)
    cached = types.SimpleNamespace(req_ids=[], resumed_req_ids=set(), new_block_ids=[], num_computed_tokens=[])
    return types.SimpleNamespace(scheduled_new_reqs=[new], scheduled_cached_reqs=cached,
                                 num_scheduled_tokens={req.request_id: scheduled})


def scheduler(kv_role: str, pool: PrefixIndex) -> PoolConnectorScheduler:
    return PoolConnectorScheduler(pool, BLOCK, SALT, role=ConnectorRole.from_kv_role(kv_role))


def saved_keys(meta) -> list[int]:
    return [k for save in meta.saves for k in save.keys]


def test_roles_from_kv_role():
    assert [(r.kv_role, r.saves, r.hands_off) for r in map(ConnectorRole.from_kv_role, KV_ROLES)] == [
        ("kv_both", True, False), ("kv_producer", True, True), ("kv_consumer", False, False)]


@pytest.mark.parametrize("bad", [None, "producer", "kv_prefill", ""])
def test_an_unknown_kv_role_names_the_field_and_the_choices(bad):
    with pytest.raises(ValueError, match=r"kv_transfer_config.kv_role: .* expected one of kv_both, kv_producer, kv_consumer"):
        ConnectorRole.from_kv_role(bad)


@pytest.mark.parametrize("kv_role", KV_ROLES)
def test_every_role_saves_only_if_it_is_not_a_consumer(kv_role):
    req = request("r", 10)  # 2 full blocks + 2 tokens
    sched = scheduler(kv_role, PrefixIndex())
    assert sched.get_num_new_matched_tokens(req, 0) == (0, False)
    meta = sched.build_connector_meta(step(req, [5, 6, 7], 0, 10))
    assert saved_keys(meta) == ([] if kv_role == "kv_consumer" else keys_of(req)[:2])
    assert sched.request_finished(req, [5, 6, 7]) == (False, None)  # nothing held after the request


@pytest.mark.parametrize("kv_role", KV_ROLES)
def test_every_role_loads_what_the_pool_holds(kv_role):
    req = request("r", 13)  # 3 full blocks + 1
    pool = PrefixIndex(keys_of(req)[:3])
    sched = scheduler(kv_role, pool)
    assert sched.get_num_new_matched_tokens(req, 0) == (12, False)
    sched.update_state_after_alloc(req, types.SimpleNamespace(get_block_ids=lambda: ([9, 8, 7, 6],)), 12)
    meta = sched.build_connector_meta(step(req, [9, 8, 7, 6], 12, 1))
    assert [(load.block_ids, load.keys) for load in meta.loads] == [([9, 8, 7], keys_of(req)[:3])]
    assert meta.saves == []  # loaded blocks are in the pool already


def test_a_producer_resaves_locally_cached_blocks_the_pool_no_longer_holds():
    req = request("r", 14)  # 3 full blocks + 2
    keys = keys_of(req)
    pool = PrefixIndex(keys[:1])  # blocks 1 and 2 were evicted from the pool since this pod cached them
    producer = scheduler("kv_producer", pool)
    assert producer.get_num_new_matched_tokens(req, 12) == (0, False)  # all 3 full blocks cached locally
    meta = producer.build_connector_meta(step(req, [3, 4, 5, 6], 12, 2))
    assert [(s.block_ids, s.keys, s.warm) for s in meta.saves] == [([4, 5], keys[1:3], True)]
    # kv_both trusts that what it computed earlier is in the pool: no probe, no save.
    both_pool = PrefixIndex(keys[:1])
    both = scheduler("kv_both", both_pool)
    assert both.get_num_new_matched_tokens(req, 12) == (0, False) and both_pool.lookups == 0
    assert both.build_connector_meta(step(req, [3, 4, 5, 6], 12, 2)).saves == []


def test_a_producer_probes_the_last_full_block_too():
    # 8 tokens = exactly 2 blocks: vLLM computes the last token, so block 1 is never loadable,
    # yet it is a full prompt block the producer must hand off.
    req = request("r", 8)
    keys = keys_of(req)
    producer = scheduler("kv_producer", PrefixIndex(keys[:2]))
    assert producer.get_num_new_matched_tokens(req, 4) == (0, False)  # block 0 local; block 1 not loadable
    assert producer.build_connector_meta(step(req, [0, 1], 4, 4)).saves == []  # the pool holds both
    producer = scheduler("kv_producer", PrefixIndex(keys[:1]))
    producer.get_num_new_matched_tokens(req, 4)
    assert saved_keys(producer.build_connector_meta(step(req, [0, 1], 4, 4))) == [keys[1]]


def test_a_producer_saves_nothing_twice_when_the_pool_holds_its_local_prefix():
    req = request("r", 14)
    keys = keys_of(req)
    producer = scheduler("kv_producer", PrefixIndex(keys[:2]))
    assert producer.get_num_new_matched_tokens(req, 8) == (0, False)  # 2 blocks local, the same 2 pooled
    assert saved_keys(producer.build_connector_meta(step(req, [3, 4, 5, 6], 8, 6))) == [keys[2]]


def test_a_consumer_tracks_nothing():
    req = request("r", 14)
    consumer = scheduler("kv_consumer", PrefixIndex())
    consumer.get_num_new_matched_tokens(req, 0)
    consumer.build_connector_meta(step(req, [3, 4, 5, 6], 0, 14))
    assert consumer._tracked == {}
    consumer.request_finished(req, [3, 4, 5, 6])
    assert consumer._keys == {} and consumer._local_tokens == {}
