"""The same-node shared-memory path: negotiation, one-copy transfers, leases, pins, zombies."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from runtime_components.kv import protocol as p
from runtime_components.kv.client import KVPoolClient
from runtime_components.kv.connection import MemberConnection
from runtime_components.kv.store import BlockStore, PutStatus
from tests.kv.conftest import client_config, running_servers


@pytest.mark.parametrize(("client_node", "want_shm"), [("node-a", True), ("node-b", False)])
def test_shm_is_used_only_on_the_same_node(tmp_path, client_node, want_shm):
    async def main():
        async with running_servers(1, shm={"enabled": True, "dir": str(tmp_path)}) as servers:
            server = servers[0]
            assert server.store.heap.path is not None and os.path.dirname(server.store.heap.path) == str(tmp_path)
            client = KVPoolClient(client_config(servers), node_id=client_node)
            rng = random.Random(8)
            data = [(rng.getrandbits(64), rng.randbytes(rng.randrange(1, 20000))) for _ in range(40)]
            assert await client.put(data) == [PutStatus.STORED] * 40
            got = await client.get([k for k, _ in data])
            assert [bytes(g) for g in got] == [b for _, b in data]
            used = client.stats.shm_blocks if want_shm else client.stats.tcp_blocks
            assert used == 40
            await asyncio.sleep(0.05)  # the fire-and-forget SHM_RELEASE lands
            assert all(b.pins == 0 for b in server.store.blocks.values())
            assert server.store.outside_bytes == 0
            await client.close()
        assert not os.listdir(tmp_path)  # the heap file is unlinked at shutdown

    asyncio.run(main())


def test_tcp_reader_gets_a_crc_for_a_block_written_through_shm(tmp_path):
    async def main():
        async with running_servers(1, shm={"enabled": True, "dir": str(tmp_path)}) as servers:
            writer = KVPoolClient(client_config(servers, verifyShmChecksums=False), node_id="node-a")
            reader = KVPoolClient(client_config(servers), node_id="elsewhere")
            await writer.put([(5, b"z" * 9000)])
            assert servers[0].store.blocks[5].crc is None  # not computed on the one-copy path
            assert [bytes(g) for g in await reader.get([5])] == [b"z" * 9000]
            assert servers[0].store.blocks[5].crc is not None and reader.stats.tcp_blocks == 1
            await writer.close()
            await reader.close()

    asyncio.run(main())


def test_shm_read_catches_a_torn_block_by_default(tmp_path):
    async def main():
        async with running_servers(1, shm={"enabled": True, "dir": str(tmp_path)}) as servers:
            client = KVPoolClient(client_config(servers), node_id="node-a")  # defaults: corruption is never a hit
            await client.put([(5, b"q" * 9000)])
            block = servers[0].store.blocks[5]
            assert block.crc is not None  # verified writes carry their CRC
            servers[0].store.heap.view[block.pages[1] * 4096 + 3] ^= 1
            assert await client.get([5]) == [None] and client.stats.checksum_errors == 1
            await client.close()

    asyncio.run(main())


def test_block_written_without_a_crc_is_verified_for_shm_readers(tmp_path):
    async def main():
        async with running_servers(1, shm={"enabled": True, "dir": str(tmp_path)}) as servers:
            writer = KVPoolClient(client_config(servers, verifyShmChecksums=False), node_id="node-a")
            reader = KVPoolClient(client_config(servers), node_id="node-a")
            await writer.put([(6, b"w" * 9000)])
            assert [bytes(g) for g in await reader.get([6])] == [b"w" * 9000]  # first read: the member adds a CRC
            block = servers[0].store.blocks[6]
            servers[0].store.heap.view[block.pages[0] * 4096] ^= 4
            assert await reader.get([6]) == [None] and reader.stats.checksum_errors == 1
            await writer.close()
            await reader.close()

    asyncio.run(main())


def test_client_that_vanishes_mid_write_leaks_no_pages(tmp_path):
    async def main():
        async with running_servers(1, shm={"enabled": True, "dir": str(tmp_path)}) as servers:
            store = servers[0].store
            conn = await MemberConnection.open(f"127.0.0.1:{servers[0].port}", connect_timeout=1,
                                               node_id="node-a", want_shm=True)
            answer = await conn.call(p.Op.SHM_ALLOC, [p.encode_shm_alloc_request([(1, 10000), (2, 10000)])], 1)
            lease, entries = p.decode_shm_alloc_response(answer)
            assert [len(e.pages) for e in entries] == [3, 3] and store.outside_bytes == 6 * 4096
            got = await conn.call(p.Op.GET, [p.encode_keys([1])], 1)
            assert p.decode_get_response(got, [1])[0].status == 0  # invisible until committed
            conn.close()
            for _ in range(100):
                if store.outside_bytes == 0:
                    break
                await asyncio.sleep(0.01)
            assert store.outside_bytes == 0 and store.pages_in_use() == 0

    asyncio.run(main())


def test_block_evicted_while_pinned_stays_readable_until_released():
    store = BlockStore(4 * 4096, 4096, policy="fifo")
    assert store.put(1, b"a" * 4096, None) == PutStatus.STORED
    reader_view = store.lookup(1)
    assert reader_view is not None
    store.pin(reader_view)
    for key in (2, 3, 4):
        store.put(key, bytes([key]) * 4096, None)
    assert store.put(5, b"e" * 4096, None) == PutStatus.STORED  # evicts 1 (now a zombie), then 2
    assert not store.exists(1) and not store.exists(2) and reader_view.zombie
    offset = reader_view.pages[0] * 4096
    assert bytes(store.heap.view[offset : offset + 4]) == b"aaaa"  # the reader's bytes are intact
    assert store.pages_in_use() == 4 and store.outside_bytes == 4096
    store.unpin(reader_view)
    assert store.outside_bytes == 0 and store.pages_in_use() == 3
    store.close()


def test_store_accounting_invariant_under_random_operations():
    rng = random.Random(11)
    store = BlockStore(64 * 1024, 1024, policy="s3fifo")
    pinned = []
    for _ in range(3000):
        action = rng.random()
        key = rng.randrange(200)
        if action < 0.5:
            store.put(key, rng.randbytes(rng.randrange(1, 5000)), None)
        elif action < 0.7:
            block = store.lookup(key)
            if block is not None and rng.random() < 0.5:
                store.pin(block)
                pinned.append(block)
        elif action < 0.85 and pinned:
            store.unpin(pinned.pop(rng.randrange(len(pinned))))
        elif action < 0.95:
            status, block = store.reserve(key, rng.randrange(1, 5000))
            if block is not None:
                store.commit(key, block, None, verify=False) if rng.random() < 0.7 else store.abort(block)
        else:
            store.remove(key)
        assert store.pages_in_use() * 1024 == store.index.used_bytes + store.outside_bytes
    for block in pinned:
        store.unpin(block)
    assert store.outside_bytes == 0
    store.close()


def test_member_naming_pages_outside_its_heap_is_treated_as_dead(tmp_path):
    async def main():
        async with running_servers(1, shm={"enabled": True, "dir": str(tmp_path)}) as servers:
            client = KVPoolClient(client_config(servers), node_id="node-a")
            await client.put([(5, b"w" * 9000)])
            servers[0].store.blocks[5].pages[1] = 10**6  # a broken member
            assert await client.get([5]) == [None]
            assert client.stats.member_failures == 1
            assert "member named pages" in client.last_errors[-1]
            await client.close()

    asyncio.run(main())
