"""The gateway's own HTTP/2 gRPC server, against grpcio's client (an independent HTTP/2 and gRPC
implementation), and its HPACK decoder against the ``hpack`` package's encoder.

Real Envoy in front of it is covered by every Envoy test in this folder (the builtin server is
the default) and by test_grpcio_server_still_serves_envoy below for the fallback."""

from __future__ import annotations

import asyncio
import random

import grpc
import hpack
import pytest

from runtime_components.gateway.h2_server import EOF, H2GrpcServer, StreamMethod, UnaryMethod
from runtime_components.gateway.hpack_decode import HpackDecoder, HpackError

ECHO = "/test.Echo/Chat"
SLOW = "/test.Echo/Slow"
BOOM = "/test.Echo/Boom"
UNARY = "/test.Echo/Once"
LIMIT = 1 << 20


def _identity(data: bytes) -> bytes:
    return data


class Rig:
    """An H2GrpcServer with test methods, and what its handlers saw."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

        async def chat(context) -> None:  # type: ignore[no-untyped-def]
            while (message := await context.read()) is not EOF:
                await context.write(_Raw(message * 2))

        async def slow(context) -> None:  # type: ignore[no-untyped-def]
            self.started.set()
            try:
                await context.read()
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise

        async def boom(context) -> None:  # type: ignore[no-untyped-def]
            await context.read()
            raise RuntimeError("handler bug")

        async def once(request: bytes) -> bytes:
            return b"got:" + request

        self.server = H2GrpcServer({ECHO: StreamMethod(chat, _identity), SLOW: StreamMethod(slow, _identity),
                                    BOOM: StreamMethod(boom, _identity), UNARY: UnaryMethod(once)},
                                   max_receive_message_length=LIMIT)


class _Raw:
    """A 'message' whose serialization is itself."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return self.data


def run(test, rig_class: type = Rig) -> None:  # type: ignore[no-untyped-def]
    """``test(rig, channel)`` against a started ``rig_class()`` (its ``server``), then stop it."""
    async def main() -> None:
        rig = rig_class()
        port = await rig.server.start("127.0.0.1", 0)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await test(rig, channel)
        finally:
            await rig.server.stop(grace=0.5)

    asyncio.run(main())


async def settled(server: H2GrpcServer) -> None:
    """Wait until the server has forgotten every call (at most 2 s)."""
    for _ in range(200):
        if not any(c.streams for c in server.connections):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a call was never forgotten")


def _stream(channel: grpc.aio.Channel, path: str = ECHO, **kwargs):  # type: ignore[no-untyped-def]
    return channel.stream_stream(path, request_serializer=_identity, response_deserializer=_identity)(**kwargs)


def test_a_bidirectional_stream_answers_each_message_in_order():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _stream(channel)
        for text in (b"a", b"bc", b""):
            await call.write(text)
            assert await call.read() == text * 2
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

    run(test)


def test_many_concurrent_streams_on_one_connection():
    async def one(channel: grpc.aio.Channel, i: int) -> bytes:
        call = _stream(channel)
        await call.write(str(i).encode())
        answer = await call.read()
        await call.done_writing()
        await call.code()
        return answer

    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        answers = await asyncio.gather(*(one(channel, i) for i in range(300)))
        assert answers == [str(i).encode() * 2 for i in range(300)]
        assert len(rig.server.connections) == 1

    run(test)


def test_messages_larger_than_every_window_and_frame_cross_intact():
    # 600 KiB in, 1.2 MiB back: above grpcio's 64 KiB initial windows and 16 KiB frames, so both
    # directions need WINDOW_UPDATEs and several DATA frames per message.
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        payload = random.Random(1).randbytes(600 * 1024)
        call = _stream(channel)
        for _ in range(3):
            await call.write(payload)
            assert await call.read() == payload * 2
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK

    run(test)


def test_a_message_over_the_receive_limit_is_refused_with_resource_exhausted():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _stream(channel)
        await call.write(b"x" * (LIMIT + 1))
        assert await call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in await call.details()
        follow = _stream(channel)  # the connection stays usable
        await follow.write(b"ok")
        assert await follow.read() == b"okok"
        await follow.done_writing()

    run(test)


def test_unknown_methods_and_failing_handlers_get_grpc_statuses():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        unknown = _stream(channel, "/test.Echo/Nope")
        await unknown.done_writing()
        assert await unknown.code() == grpc.StatusCode.UNIMPLEMENTED
        boom = _stream(channel, BOOM)
        await boom.write(b"x")
        assert await boom.code() == grpc.StatusCode.INTERNAL
        assert await boom.details() == "internal error"  # the bug's text stays in the server's log

    run(test)


def test_a_unary_call():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        once = channel.unary_unary(UNARY, request_serializer=_identity, response_deserializer=_identity)
        assert await once(b"ping") == b"got:ping"

    run(test)


def test_a_compressed_message_is_refused():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _stream(channel, compression=grpc.Compression.Gzip)
        await call.write(b"y" * 100)
        assert await call.code() == grpc.StatusCode.UNIMPLEMENTED

    run(test)


def test_a_client_that_cancels_cancels_the_handler_at_once():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _stream(channel, SLOW)
        await call.write(b"hold me")
        await asyncio.wait_for(rig.started.wait(), 5)
        call.cancel()
        await asyncio.wait_for(rig.cancelled.wait(), 5)
        await settled(rig.server)

    run(test)


def test_a_closed_connection_cancels_its_handlers():
    async def main() -> None:
        rig = Rig()
        port = await rig.server.start("127.0.0.1", 0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        call = _stream(channel, SLOW)
        await call.write(b"x")
        await asyncio.wait_for(rig.started.wait(), 5)
        await channel.close()
        await asyncio.wait_for(rig.cancelled.wait(), 5)
        await rig.server.stop(grace=0.1)

    asyncio.run(main())


def test_a_peer_that_is_not_http2_is_closed():
    async def main() -> None:
        rig = Rig()
        port = await rig.server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)  # read to EOF: the server closed
        frames, pos = [], 0
        while pos + 9 <= len(data):
            length = int.from_bytes(data[pos:pos + 3], "big")
            frames.append((data[pos + 3], data[pos + 9:pos + 9 + length]))
            pos += 9 + length
        kinds = [kind for kind, _ in frames]
        assert kinds[0] == 0x4 and kinds[-1] == 0x7  # SETTINGS first, GOAWAY last
        goaway = frames[-1][1]
        assert int.from_bytes(goaway[4:8], "big") == 0x1  # PROTOCOL_ERROR
        assert b"not an HTTP/2 client preface" in goaway[8:]
        writer.close()
        await rig.server.stop(grace=0.1)

    asyncio.run(main())


# -- HPACK ------------------------------------------------------------------------------------
ENVOY_LIKE = [(":method", "POST"), (":scheme", "http"), (":path", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"),
              (":authority", "ext_proc_cluster"), ("content-type", "application/grpc"), ("te", "trailers"),
              ("grpc-timeout", "200m"), ("x-envoy-internal", "true")]


def _pairs(headers):  # type: ignore[no-untyped-def]
    return [(n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str) else v) for n, v in headers]


def test_hpack_decoder_follows_the_encoders_dynamic_table():
    encoder, ours, theirs = hpack.Encoder(), HpackDecoder(), hpack.Decoder()
    for _ in range(5):  # the first block adds entries, the next ones are one byte per header
        block = encoder.encode(ENVOY_LIKE)
        assert ours.decode(block) == _pairs(theirs.decode(block, raw=True))
    assert len(block) < 16


def test_hpack_decoder_agrees_with_the_reference_on_random_blocks():
    rng = random.Random(7)
    encoder, ours, theirs = hpack.Encoder(), HpackDecoder(), hpack.Decoder()
    names = ["x-a", "x-b", "content-length", "user-agent", ":path", "cookie"]
    for i in range(400):
        if i % 97 == 0:
            encoder.header_table_size = rng.choice([0, 256, 4096])  # emits a size update
        headers = [(rng.choice(names), "v" * rng.randrange(0, 300) + str(rng.random())) for _ in range(rng.randrange(1, 8))]
        block = encoder.encode(headers, huffman=rng.random() < 0.5)
        assert ours.decode(block) == _pairs(theirs.decode(block, raw=True))


def test_hpack_decoder_refuses_bad_blocks():
    with pytest.raises(HpackError, match="outside the table"):
        HpackDecoder().decode(b"\xff\x10")  # index 127 + 16 with an empty dynamic table
    with pytest.raises(HpackError, match="truncated"):
        HpackDecoder().decode(b"\x40\x05ab")
    with pytest.raises(HpackError, match="exceeds"):
        HpackDecoder(max_table_size=100).decode(b"\x3f\xe1\x1f")  # size update to 4096


# -- frames on the wire, without a client library ------------------------------------------------
class _Wire(asyncio.Transport):
    """A transport that keeps what the server writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + stream_id.to_bytes(4, "big") + payload


def _parse(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames, pos = [], 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        frames.append((data[pos + 3], data[pos + 4], int.from_bytes(data[pos + 5:pos + 9], "big"),
                       bytes(data[pos + 9:pos + 9 + length])))
        pos += 9 + length
    return frames


def test_an_oversized_message_in_one_frame_is_refused_and_the_rest_of_the_call_dropped():
    from runtime_components.gateway import h2_server

    async def main() -> None:
        server = Rig().server
        server.max_receive = 10
        conn = h2_server._Connection(server)
        wire = _Wire()
        conn.connection_made(wire)
        headers = hpack.Encoder().encode([(":method", "POST"), (":path", ECHO), (":scheme", "http"),
                                          (":authority", "x"), ("content-type", "application/grpc")])
        message = b"\x00" + (20).to_bytes(4, "big") + b"y" * 20
        conn.data_received(h2_server._PREFACE + _frame(0x4, 0, 0) + _frame(0x1, 0x4, 1, headers) + _frame(0x0, 0, 1, message))
        for _ in range(5):
            await asyncio.sleep(0)
        conn.data_received(_frame(0x0, 0x1, 1, b"\x00\x00\x00\x00\x02ab"))  # more data, then the client's end
        for _ in range(5):
            await asyncio.sleep(0)
        frames = _parse(bytes(wire.out))
        trailers = [payload for ftype, flags, sid, payload in frames if ftype == 0x1 and sid == 1 and flags & 0x1]
        assert len(trailers) == 1 and b"grpc-status\x018" in trailers[0]  # RESOURCE_EXHAUSTED, and only once
        assert not [f for f in frames if f[0] == 0x0 and f[2] == 1]  # nothing echoed
        assert not conn.streams and not wire.closed  # the connection goes on

    asyncio.run(main())
