"""The builtin HTTP/2 server's session calls (``SessionMethod``, how ext_proc is served): steps run
inside the protocol callback until one has to wait, the messages behind a waiting step keep
their order, and whatever ends a call (half-close, cancel, reset, lost connection, an error)
runs the session's ``on_end`` exactly once. Driven by grpcio's client, and by raw frames where
the timing has to be exact."""

from __future__ import annotations

import asyncio
import gc
import random
import warnings
from collections import Counter
from typing import Any

import grpc
import hpack

from runtime_components.gateway.h2_server import H2GrpcServer, SessionMethod, _Connection, _frame

from .test_h2_server import run as run_with
from .test_h2_server import settled

ECHO = "/test.Session/Echo"  # answers at once
LATE = "/test.Session/Late"  # b"wait..." is answered after a sleep, anything else at once
HOLD = "/test.Session/Hold"  # never answers (until cancelled)
BOOM = "/test.Session/Boom"  # on_message raises
QUIET = "/test.Session/Quiet"  # answers nothing, ends OK at the half-close
LIMIT = 1 << 20
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return self.data


class _Unserializable:
    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        raise ValueError("not a message")


class Rig:
    """A server whose sessions record how each call went."""

    def __init__(self) -> None:
        self.ends: Counter[str] = Counter()
        self.tasks: list[asyncio.Task[Any] | None] = []  # the task each immediate step ran in
        self.cancelled = asyncio.Event()
        self.holding = asyncio.Event()
        rig = self

        class Session:
            def __init__(self, name: str) -> None:
                self.name = name

            def on_message(self, message: bytes) -> Any:
                if self.name == ECHO:
                    rig.tasks.append(asyncio.current_task())
                    return _Raw(message * 2)
                if self.name == LATE:
                    return self._late(message) if message.startswith(b"wait") else _Raw(b"now:" + message)
                if self.name == HOLD:
                    return self._hold()
                if self.name == BOOM:
                    if message == b"unserializable":
                        return _Unserializable()
                    raise RuntimeError("session bug")
                return None

            async def _late(self, message: bytes) -> _Raw:
                await asyncio.sleep(0.05)
                return _Raw(b"late:" + message)

            async def _hold(self) -> _Raw:
                rig.holding.set()
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    rig.cancelled.set()
                    raise
                return _Raw(b"never")

            def on_end(self) -> Any:
                if self.name == LATE:  # an end that waits (a coroutine) ...
                    return self._end_later()
                rig.ends[self.name] += 1  # ... and ends that do not (what ext_proc's does)
                return None

            async def _end_later(self) -> None:
                await asyncio.sleep(0.01)
                rig.ends[self.name] += 1

        def method(name: str) -> SessionMethod:
            return SessionMethod(lambda: Session(name), lambda raw: raw)

        self.server = H2GrpcServer({name: method(name) for name in (ECHO, LATE, HOLD, BOOM, QUIET)},
                                   max_receive_message_length=LIMIT)


def run(test) -> None:  # type: ignore[no-untyped-def]
    run_with(test, Rig)


def _call(channel: grpc.aio.Channel, path: str) -> Any:
    return channel.stream_stream(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)()


def test_a_session_answers_in_order_inside_the_protocol_callback():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _call(channel, ECHO)
        for text in (b"a", b"bc", b""):
            await call.write(text)
            assert await call.read() == text * 2
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert rig.tasks == [None, None, None]  # no task per call or per message
        await settled(rig.server)
        assert rig.ends == {ECHO: 1}

    run(test)


def test_messages_behind_a_waiting_step_keep_their_order():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _call(channel, LATE)
        for text in (b"wait-1", b"x", b"wait-2", b"y"):
            await call.write(text)
        await call.done_writing()
        answers = [await call.read() for _ in range(4)]
        assert answers == [b"late:wait-1", b"now:x", b"late:wait-2", b"now:y"]
        assert await call.code() == grpc.StatusCode.OK
        await settled(rig.server)
        assert rig.ends == {LATE: 1}

    run(test)


def test_many_concurrent_sessions_and_large_messages():
    async def one(channel: grpc.aio.Channel, payload: bytes) -> bytes:
        call = _call(channel, ECHO)
        await call.write(payload)
        answer = await call.read()
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        return answer

    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        # 600 KiB answered with 1.2 MiB: the answer waits for the client's WINDOW_UPDATEs.
        big = random.Random(2).randbytes(600 * 1024)
        payloads = [str(i).encode() for i in range(200)] + [big, big]
        assert await asyncio.gather(*(one(channel, p) for p in payloads)) == [p * 2 for p in payloads]
        await settled(rig.server)
        assert rig.ends == {ECHO: len(payloads)}

    run(test)


def test_a_cancelled_call_cancels_the_waiting_step_and_ends_once():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _call(channel, HOLD)
        await call.write(b"hold me")
        await asyncio.wait_for(rig.holding.wait(), 5)
        call.cancel()
        await asyncio.wait_for(rig.cancelled.wait(), 5)
        await settled(rig.server)
        assert rig.ends == {HOLD: 1}

    run(test)


def test_a_failing_session_answers_internal_and_ends_once():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _call(channel, BOOM)
        await call.write(b"x")
        assert await call.code() == grpc.StatusCode.INTERNAL
        assert await call.details() == "internal error"
        bad = _call(channel, BOOM)  # an answer that cannot be sent fails its call, not the connection
        await bad.write(b"unserializable")
        assert await bad.code() == grpc.StatusCode.INTERNAL
        quiet = _call(channel, QUIET)  # no answers at all: ends OK at the half-close
        await quiet.write(b"x")
        await quiet.done_writing()
        assert await quiet.code() == grpc.StatusCode.OK
        await settled(rig.server)
        assert rig.ends == {BOOM: 2, QUIET: 1}
        assert len(rig.server.connections) == 1  # the same connection served all three

    run(test)


def test_an_oversized_message_ends_the_session_with_resource_exhausted():
    async def test(rig: Rig, channel: grpc.aio.Channel) -> None:
        call = _call(channel, ECHO)
        await call.write(b"x" * (LIMIT + 1))
        assert await call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await settled(rig.server)
        assert rig.ends == {ECHO: 1}

    run(test)


def test_a_closed_connection_ends_every_session():
    async def main() -> None:
        rig = Rig()
        port = await rig.server.start("127.0.0.1", 0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        hold = _call(channel, HOLD)
        await hold.write(b"x")
        echo = _call(channel, ECHO)
        await echo.write(b"y")
        assert await echo.read() == b"yy"
        await asyncio.wait_for(rig.holding.wait(), 5)
        await channel.close()
        await asyncio.wait_for(rig.cancelled.wait(), 5)
        for _ in range(200):
            if rig.ends == {HOLD: 1, ECHO: 1}:
                break
            await asyncio.sleep(0.01)
        assert rig.ends == {HOLD: 1, ECHO: 1}
        await rig.server.stop(grace=0.1)

    asyncio.run(main())


def _hold_call() -> bytes:
    """A client's preface and a HOLD call with one message, as raw HTTP/2 frames (stream 1)."""
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", HOLD),
                                    (":authority", "gateway"), ("content-type", "application/grpc")])
    message = b"\x00" + (4).to_bytes(4, "big") + b"hold"
    return _PREFACE + _frame(4, 0, 0) + _frame(1, 4, 1, block) + _frame(0, 0, 1, message)


_RESET_CALL = _frame(3, 0, 1, (8).to_bytes(4, "big"))  # RST_STREAM(CANCEL) on stream 1


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


def test_a_reset_before_a_steps_task_has_run_ends_the_call_once_without_starting_the_step():
    # The message whose answer is a coroutine and the RST_STREAM arrive in one read: the step's
    # task exists but has not run when the reset comes. Cancelling that task would skip its body
    # and leave the coroutine never started (and the call never ended); instead the task, when
    # it runs, closes the coroutine unstarted and ends the call.
    async def main() -> None:
        rig = Rig()
        conn = _Connection(rig.server)
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail the test
            conn.data_received(_hold_call() + _RESET_CALL)
            for _ in range(50):
                await asyncio.sleep(0)
            gc.collect()
        assert rig.ends == {HOLD: 1}
        assert not rig.holding.is_set()  # the step never ran
        assert not conn.streams
        conn.connection_lost(None)
        assert rig.ends == {HOLD: 1}

    asyncio.run(main())


def test_a_reset_while_a_step_waits_cancels_it_and_ends_the_call_once():
    async def main() -> None:
        rig = Rig()
        conn = _Connection(rig.server)
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        conn.data_received(_hold_call())
        await asyncio.wait_for(rig.holding.wait(), 5)
        conn.data_received(_RESET_CALL)
        await asyncio.wait_for(rig.cancelled.wait(), 5)
        for _ in range(10):
            await asyncio.sleep(0)
        assert rig.ends == {HOLD: 1} and not conn.streams

    asyncio.run(main())
