"""A member spends memory only on bytes that arrived, bounds what is in flight, and times out
half-sent frames (issue 22, item 10). Real sockets against real servers; the memory tests
measure a server subprocess's resident set."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from runtime_components.common.memory import rss_bytes
from runtime_components.common.processes import stop_process
from runtime_components.kv import protocol as p
from runtime_components.kv.protocol import ErrorCode, Op
from runtime_components.kv.store import PutStatus
from tests.kv.conftest import running_servers

MiB = 1 << 20

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads resident memory from /proc")


class ServerProcess:
    """``aibrix-kv-server`` in a subprocess on free ports."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime_components.kv.cli", "--host", "127.0.0.1", "--port", "0",
             "--metrics-port", "0", "--no-shm", "--log-level", "WARNING", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("aibrix-kv-server listening"), line + self.proc.stderr.read()  # type: ignore[union-attr]
        fields = dict(part.split("=") for part in line.split()[2:])
        self.port, self.metrics_port = int(fields["port"]), int(fields["metrics_port"])

    def rss(self) -> int:
        value = rss_bytes(self.proc.pid)
        assert value is not None
        return value

    def gauge(self, name: str) -> float | None:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_gauge(self, name: str, value: float, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.gauge(name) != value:
            assert time.monotonic() < deadline, f"{name} never reached {value} (now {self.gauge(name)})"
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def member() -> Iterator[ServerProcess]:
    server = ServerProcess("--capacity", "256Mi")
    yield server
    server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _settle(server: ServerProcess) -> int:
    """RSS once the server has handled what was sent (two equal readings 50 ms apart)."""
    last = server.rss()
    for _ in range(40):
        time.sleep(0.05)
        now = server.rss()
        if now == last:
            return now
        last = now
    return last


@linux_only
def test_header_flood_costs_no_memory(member):
    # Six connections each announce a 64 MiB PUT (accepted: one block of maxBlockSize) and
    # send nothing more. Before: each header allocated and zeroed 64 MiB at once.
    baseline = _settle(member)
    socks = [_connect(member.port) for _ in range(6)]
    try:
        for sock in socks:
            sock.sendall(p.encode_frame(Op.PUT, 1, 64 * MiB))
        member.wait_gauge("aibrix_kv_connections", 6)
        grown = (_settle(member) - baseline) / MiB
        assert grown <= 16, f"the server grew by {grown:.0f} MiB for six headers and no payload"
    finally:
        for sock in socks:
            sock.close()


@linux_only
def test_memory_follows_arrived_bytes_and_returns_after_close(member):
    baseline = _settle(member)
    socks = [_connect(member.port) for _ in range(3)]
    try:
        for sock in socks:  # half of a 64 MiB frame each: 96 MiB really arrived
            sock.sendall(p.encode_frame(Op.PUT, 1, 64 * MiB) + bytes(32 * MiB))
        member.wait_gauge("aibrix_kv_connections", 3)
        held = (_settle(member) - baseline) / MiB
        assert 80 <= held <= 96 + 96 + 16, f"{held:.0f} MiB held for 96 MiB received (growth at most doubles)"
    finally:
        for sock in socks:
            sock.close()
    member.wait_gauge("aibrix_kv_connections", 0)
    member.wait_gauge("aibrix_kv_receive_reserved_bytes", 0)
    left = (_settle(member) - baseline) / MiB
    assert left <= 16, f"{left:.0f} MiB still held after the connections closed"


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    header = b""
    while len(header) < p.HEADER.size:
        chunk = sock.recv(p.HEADER.size - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    _, _, op, _, length = p.HEADER.unpack(header)
    payload = b""
    while len(payload) < length:
        chunk = sock.recv(length - len(payload))
        if not chunk:
            raise ConnectionError("closed")
        payload += chunk
    return op, payload


def test_half_sent_frame_times_out_with_an_error_then_close():
    async def main():
        async with running_servers(1, frameTimeoutSeconds=0.3) as servers:
            reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)
            writer.write(p.encode_frame(Op.PUT, 7, 1000) + b"x" * 10)
            await writer.drain()
            header = await asyncio.wait_for(reader.readexactly(p.HEADER.size), 20)
            _, _, op, _, length = p.HEADER.unpack(header)
            err = p.decode_error(await reader.readexactly(length))
            assert (op, err.code) == (Op.ERROR, ErrorCode.TIMEOUT)
            assert err.message == "frame not received within 0.3 s of its first byte"
            assert await asyncio.wait_for(reader.read(), 20) == b""  # then closed
            assert servers[0].counters.frame_timeouts == 1 and servers[0].budget.used == 0
            writer.close()

    asyncio.run(main())


def test_idle_connection_is_not_timed_out():
    async def main():
        async with running_servers(1, frameTimeoutSeconds=0.2) as servers:
            reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)
            await asyncio.sleep(0.6)  # three timeouts long, but no frame was started
            keys = p.encode_keys([1, 2])
            writer.write(p.encode_frame(Op.EXISTS, 2, len(keys)) + keys)
            await writer.drain()
            header = await asyncio.wait_for(reader.readexactly(p.HEADER.size), 20)
            _, _, op, _, length = p.HEADER.unpack(header)
            assert op == Op.EXISTS | p.RESPONSE_BIT
            assert p.decode_statuses(await reader.readexactly(length)) == [0, 0]
            assert servers[0].counters.frame_timeouts == 0
            writer.close()

    asyncio.run(main())


def _put_frame(request_id: int, key: int, size: int) -> bytes:
    data = bytes([key % 251]) * size
    table = p.encode_put_request([(key, None, size)])
    return p.encode_frame(Op.PUT, request_id, len(table) + size) + table + data


def test_requests_beyond_the_total_budget_wait_then_complete():
    # Budget 1100 KiB, requests of ~512 KiB: the third waits (its socket is not read) until
    # the first finishes; nothing fails.
    async def main():
        async with running_servers(1, capacity="8Mi", maxBlockSize="512Ki", maxRequestSize="600Ki",
                                   maxBufferedBytes="1100Ki", frameTimeoutSeconds=30) as servers:
            server = servers[0]
            frames = [_put_frame(i, 100 + i, 512 * 1024) for i in range(3)]
            conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
            for (_, writer), frame in zip(conns, frames):
                writer.write(frame[:100])  # header and a little payload
                await writer.drain()
                await asyncio.sleep(0.05)
            for _ in range(400):
                if server.budget.waiting == 1:
                    break
                await asyncio.sleep(0.01)
            assert (server.budget.waiting, server.budget.used) == (1, 2 * (512 * 1024 + 25))
            for (_reader, writer), frame in zip(conns, frames):
                writer.write(frame[100:])
                await writer.drain()
            for reader, writer in conns:
                header = await asyncio.wait_for(reader.readexactly(p.HEADER.size), 20)
                _, _, op, _, length = p.HEADER.unpack(header)
                assert op == Op.PUT | p.RESPONSE_BIT
                assert p.decode_statuses(await reader.readexactly(length)) == [PutStatus.STORED]
                writer.close()
            assert server.budget.waiting == 0 and sorted(server.store.blocks) == [100, 101, 102]

    asyncio.run(main())


def test_get_answer_is_bounded_even_when_a_key_repeats():
    async def main():
        async with running_servers(1, capacity="8Mi", maxBlockSize="256Ki", maxRequestSize="300Ki",
                                   maxBufferedBytes="1Mi") as servers:
            reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)
            writer.write(_put_frame(1, 9, 200 * 1024))
            keys = p.encode_keys([9] * 1000)  # 1000 x 200 KiB would be 200 MB of answer
            writer.write(p.encode_frame(Op.GET, 2, len(keys)) + keys)
            await writer.drain()
            for _ in range(2):
                header = await asyncio.wait_for(reader.readexactly(p.HEADER.size), 20)
                _, _, op, _, length = p.HEADER.unpack(header)
                payload = await reader.readexactly(length)
            metas = p.decode_get_response(payload, [9] * 1000)
            assert [m.status for m in metas[:2]] == [1, 0] and sum(m.status for m in metas) == 1
            writer.close()

    asyncio.run(main())
