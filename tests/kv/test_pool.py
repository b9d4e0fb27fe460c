"""Real servers and clients over loopback TCP: round trips, corruption, dead members, metrics."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import urllib.request

import pytest

from runtime_components.kv import protocol as p
from runtime_components.kv.client import KVPoolClient
from runtime_components.kv.members import StaticMembers
from runtime_components.kv.store import PutStatus
from tests.kv.conftest import client_config, running_servers


def blocks_of(rng: random.Random, n: int, size: int) -> list[tuple[int, bytes]]:
    return [(rng.getrandbits(64), rng.randbytes(size)) for _ in range(n)]


def test_put_get_exists_round_trip_over_three_members():
    async def main():
        async with running_servers(3) as servers:
            client = KVPoolClient(client_config(servers), node_id="node-a")
            data = blocks_of(random.Random(1), 60, 10_000)
            assert await client.put(data) == [PutStatus.STORED] * 60
            assert await client.put(data[:5]) == [PutStatus.PRESENT] * 5
            keys = [k for k, _ in data]
            got = await client.get(keys + [12345])
            assert [bytes(g) for g in got[:60]] == [b for _, b in data] and got[60] is None
            assert await client.exists([keys[0], 12345]) == [True, False]
            assert await client.lookup_prefix(keys[:3] + [12345] + keys[3:6]) == 3
            per_member = [len(s.store.blocks) for s in servers]
            assert sum(per_member) == 60 and min(per_member) > 0  # rendezvous spreads the keys
            await client.close()

    asyncio.run(main())


def test_get_into_fills_caller_buffers_and_rejects_small_ones():
    async def main():
        async with running_servers(1) as servers:
            client = KVPoolClient(client_config(servers), node_id="node-a")
            (key, data), = blocks_of(random.Random(2), 1, 5000)
            await client.put([(key, data)])
            buf = bytearray(6000)
            assert await client.get_into([key, 7], [buf, bytearray(10)]) == [True, False]
            assert bytes(buf[:5000]) == data
            with pytest.raises(ValueError, match="get_into: buffer 0 holds 10 bytes, block has 5000"):
                await client.get_into([key], [bytearray(10)])
            await client.close()

    asyncio.run(main())


def test_corrupt_put_is_refused_and_counted():
    async def main():
        async with running_servers(1) as servers:
            reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)
            table = p.encode_put_request([(42, 0xDEADBEEF, 4)])
            writer.write(p.encode_frame(p.Op.PUT, 1, len(table) + 4) + table + b"data")
            header = await reader.readexactly(p.HEADER.size)
            _, _, op, rid, length = p.HEADER.unpack(header)
            statuses = p.decode_statuses(await reader.readexactly(length))
            writer.close()
            assert (op, rid, statuses) == (p.Op.PUT | p.RESPONSE_BIT, 1, [PutStatus.CORRUPT])
            assert servers[0].store.counters.checksum_errors == 1 and not servers[0].store.exists(42)

    asyncio.run(main())


def test_block_corrupted_at_rest_is_a_miss_for_the_reader():
    async def main():
        async with running_servers(1) as servers:
            client = KVPoolClient(client_config(servers), node_id="node-a")
            await client.put([(9, b"x" * 5000)])
            block = servers[0].store.blocks[9]
            servers[0].store.heap.view[block.pages[0] * 4096] ^= 0xFF  # flip bits behind the CRC's back
            assert await client.get([9]) == [None]
            assert client.stats.checksum_errors == 1 and client.stats.misses == 1
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("frame", "want_code", "want_message", "closed"),
    [
        (b"ZZ" + b"\x00" * 14, p.ErrorCode.BAD_MAGIC, "bad frame magic b'ZZ', expected b'KV'", True),
        (p.encode_frame(0x42, 5, 0), p.ErrorCode.UNKNOWN_OP, "unknown operation 66", False),
        (p.encode_frame(p.Op.SHM_GET, 6, 12) + p.encode_keys([1]), p.ErrorCode.SHM_UNAVAILABLE,
         "shm_get: shared memory was not negotiated on this connection (HELLO from the same node first)", False),
        (p.encode_frame(p.Op.SHM_RELEASE, 7, 4) + struct.pack("<I", 3), p.ErrorCode.UNKNOWN_LEASE,
         "shm_release: lease 3 is not held on this connection", False),
        (p.encode_frame(p.Op.GET, 8, 3) + b"abc", p.ErrorCode.MALFORMED,
         "get: payload ends at byte 3, expected at least 4", False),
    ],
)
def test_bad_requests_get_error_frames(frame, want_code, want_message, closed):
    async def main():
        async with running_servers(1) as servers:
            reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)
            writer.write(frame)
            _, _, op, _, length = p.HEADER.unpack(await reader.readexactly(p.HEADER.size))
            err = p.decode_error(await reader.readexactly(length))
            assert (op, err.code, err.message) == (p.Op.ERROR, want_code, want_message)
            if closed:  # the stream cannot be trusted any more
                assert await asyncio.wait_for(reader.read(1), 2) == b""
            else:  # the connection stays usable
                writer.write(p.encode_frame(p.Op.EXISTS, 99, 12) + p.encode_keys([1]))
                _, _, op, rid, length = p.HEADER.unpack(await reader.readexactly(p.HEADER.size))
                assert (op, rid, p.decode_statuses(await reader.readexactly(length))) == (p.Op.EXISTS | 0x80, 99, [0])
            writer.close()

    asyncio.run(main())


def test_member_dying_mid_run_turns_into_misses_not_errors():
    async def main():
        async with running_servers(3) as servers:
            client = KVPoolClient(client_config(servers, timeoutMs=300), node_id="node-a")
            data = blocks_of(random.Random(4), 90, 2000)
            await client.put(data)
            victim = servers[1]
            lost = {k for k in victim.store.blocks}
            await victim.stop(drain_seconds=0)
            got = await client.get([k for k, _ in data])
            assert {k for (k, _), g in zip(data, got) if g is None} == lost
            assert all(bytes(g) == b for (_, b), g in zip(data, got) if g is not None)
            assert client.stats.member_failures >= 1
            # While it is marked dead its puts are dropped (None), the others still store.
            more = blocks_of(random.Random(5), 30, 100)
            statuses = await client.put(more)
            assert None in statuses and PutStatus.STORED in statuses
            await client.close()

    asyncio.run(main())


def test_unreachable_member_from_the_start_is_all_misses_and_one_warning(caplog):
    async def main():
        client = KVPoolClient(client_config([], members={"source": "static", "static": ["127.0.0.1:1"]}),
                              node_id="n")
        assert await client.get([1, 2]) == [None, None]
        assert await client.put([(1, b"x")]) == [None]
        assert "cannot connect to 127.0.0.1:1" in client.last_errors[0]
        await client.close()

    with caplog.at_level(logging.WARNING, logger="runtime_components.kv.client"):
        asyncio.run(main())
    # The put during the backoff is dropped without another attempt, so without another line.
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "kv pool member 127.0.0.1:1 marked dead for 30.0 s (its blocks are misses meanwhile): cannot connect to 127.0.0.1:1"
    )


def test_empty_member_list_is_all_misses():
    async def main():
        client = KVPoolClient(client_config([], members={"source": "static", "static": ["127.0.0.1:1"]}),
                              source=StaticMembers([]), node_id="n")
        assert await client.exists([1]) == [False]
        await client.close()

    asyncio.run(main())


def test_eviction_under_pressure_and_metrics_endpoint():
    async def main():
        async with running_servers(1, capacity="256Ki", pageSize="4Ki") as servers:
            server = servers[0]
            client = KVPoolClient(client_config(servers), node_id="node-a")
            data = blocks_of(random.Random(6), 100, 8192)  # 800 KiB into 256 KiB
            for i in range(0, 100, 10):
                await client.put(data[i : i + 10])
            assert len(server.store.blocks) == 32 and server.store.index.stats.evictions == 68
            await client.get([k for k, _ in data[-5:]])
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
            for line in ("aibrix_kv_evictions_total 68.0", "aibrix_kv_hits_total 5.0", "aibrix_kv_blocks 32.0",
                         'aibrix_kv_puts_total{status="stored"} 100.0', "aibrix_kv_capacity_bytes 262144.0",
                         'aibrix_kv_requests_total{op="put"} 10.0'):
                assert line in text, line
            await client.close()

    asyncio.run(main())


def test_graceful_shutdown_answers_late_requests_with_shutting_down():
    async def main():
        async with running_servers(1) as servers:
            server = servers[0]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            server.draining = True  # the state stop() enters before it waits for in-flight work
            writer.write(p.encode_frame(p.Op.EXISTS, 1, 12) + p.encode_keys([1]))
            _, _, op, _, length = p.HEADER.unpack(await reader.readexactly(p.HEADER.size))
            err = p.decode_error(await reader.readexactly(length))
            assert (op, err.code, err.message) == (p.Op.ERROR, p.ErrorCode.SHUTTING_DOWN, "pool member is shutting down")
            server.draining = False
            await server.stop(drain_seconds=1)
            assert await asyncio.wait_for(reader.read(1), 2) == b""  # connection closed after the drain
            writer.close()

    asyncio.run(main())


def test_large_calls_are_cut_into_pipelined_requests_by_count_and_bytes():
    async def main():
        async with running_servers(1) as servers:
            client = KVPoolClient(client_config(servers, maxBatch=8, maxRequestBytes="32Ki"), node_id="node-a")
            data = blocks_of(random.Random(9), 20, 10_000)  # 3 blocks per 32 KiB request
            assert await client.put(data) == [PutStatus.STORED] * 20
            got = await client.get([k for k, _ in data])  # sized from the blocks seen: 3 per request
            assert [bytes(g) for g in got] == [b for _, b in data]
            await client.exists([k for k, _ in data])  # no payload: cut by count only (8 per request)
            requests = servers[0].counters.requests
            assert (requests[p.Op.PUT], requests[p.Op.GET], requests[p.Op.EXISTS]) == (7, 7, 3)
            await client.close()

    asyncio.run(main())
