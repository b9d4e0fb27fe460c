"""Protocol codecs: round trips, and a clear MALFORMED/TOO_LARGE error for every bad payload."""

from __future__ import annotations

import pytest

from runtime_components.kv import protocol as p
from runtime_components.kv.framing import FrameAssembler
from runtime_components.kv.protocol import ErrorCode, ProtocolError, ShmEntry


def test_keys_round_trip():
    keys = [0, 1, 2**64 - 1, 1234567890123]
    assert p.decode_keys(p.encode_keys(keys), limit=10) == keys


def test_get_response_round_trip_with_data_offsets():
    table = p.encode_get_response([(1, 111, 3), (0, 0, 0), (1, 222, 2)])
    payload = table + b"abc" + b"de"
    metas = p.decode_get_response(payload, [10, 20, 30])
    assert [(m.key, m.status, m.crc) for m in metas] == [(10, 1, 111), (20, 0, 0), (30, 1, 222)]
    assert [payload[m.offset : m.offset + m.length] for m in metas] == [b"abc", b"", b"de"]


def test_put_request_round_trip():
    table = p.encode_put_request([(5, 99, 4), (6, None, 1)])
    metas = p.decode_put_request(table + b"wxyz" + b"!", limit=8)
    assert [(m.key, m.crc, m.length) for m in metas] == [(5, 99, 4), (6, None, 1)]


@pytest.mark.parametrize("with_crc", [True, False])
def test_shm_entries_round_trip(with_crc):
    entries = [ShmEntry(1, 100, 7 if with_crc else None, (3, 4)), ShmEntry(0, 0, None, ())]
    payload = p.encode_shm_entries(9, entries, with_crc=with_crc)
    decode = p.decode_shm_get_response if with_crc else p.decode_shm_alloc_response
    lease, got = decode(payload)
    assert lease == 9
    assert [e.pages for e in got] == [(3, 4), ()]
    if with_crc:
        assert got == entries


def test_hello_commit_error_round_trips():
    assert p.decode_hello_request(p.encode_hello_request("boot:x", True)) == ("boot:x", True)
    assert p.decode_hello_response(p.encode_hello_response(65536, 1 << 30, "n", "/dev/shm/f")) == (
        65536, 1 << 30, "n", "/dev/shm/f")
    assert p.decode_shm_commit_request(p.encode_shm_commit_request(3, [5, None]), 10) == (3, [5, None])
    err = p.decode_error(p.encode_error(ErrorCode.UNKNOWN_LEASE, "lease 4 is not held"))
    assert (err.code, err.message) == (ErrorCode.UNKNOWN_LEASE, "lease 4 is not held")


@pytest.mark.parametrize(
    ("decode", "payload", "code", "message"),
    [
        (lambda b: p.decode_keys(b, 10, "get"), b"\x02\x00\x00\x00" + b"\x00" * 8, ErrorCode.MALFORMED,
         "get: payload ends at byte 12, expected at least 20"),
        (lambda b: p.decode_keys(b, 1, "get"), p.encode_keys([1, 2]), ErrorCode.TOO_LARGE,
         "get: 2 entries, at most 1 per request"),
        (lambda b: p.decode_keys(b, 10, "exists"), p.encode_keys([1]) + b"x", ErrorCode.MALFORMED,
         "exists: 1 unexpected bytes after the payload"),
        (lambda b: p.decode_put_request(b, 10), p.encode_put_request([(1, 0, 10)]) + b"short", ErrorCode.MALFORMED,
         "put: blocks need 35 bytes, payload has 30"),
        (lambda b: p.decode_get_response(b, [1, 2]), p.encode_get_response([(0, 0, 0)]), ErrorCode.MALFORMED,
         "get response: 1 entries for 2 keys"),
        (p.decode_hello_request, b"\x02\x00\xff\xfe\x01", ErrorCode.MALFORMED, "hello: a string is not UTF-8"),
    ],
)
def test_bad_payloads(decode, payload, code, message):
    with pytest.raises(ProtocolError) as err:
        decode(payload)
    assert (err.value.code, err.value.message) == (code, message)


def feed(assembler: FrameAssembler, data: bytes, chunk: int) -> None:
    """Push bytes through the BufferedProtocol interface in pieces of at most ``chunk``."""
    pos = 0
    while pos < len(data):
        buf = assembler.get_buffer(-1)
        n = min(len(buf), chunk, len(data) - pos)
        buf[:n] = data[pos : pos + n]
        assembler.buffer_updated(n)
        pos += n


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_frames_reassemble_across_any_split(chunk, reuse):
    frames = []
    assembler = FrameAssembler(lambda op, rid, payload: frames.append((op, rid, bytes(payload))), 1 << 20,
                               reuse_buffer=reuse)
    stream = (p.encode_frame(p.Op.GET, 1, 5) + b"hello" + p.encode_frame(p.Op.EXISTS, 2, 0)
              + p.encode_frame(p.Op.PUT, 3, 3) + b"xyz")
    feed(assembler, stream, chunk)
    assert frames == [(p.Op.GET, 1, b"hello"), (p.Op.EXISTS, 2, b""), (p.Op.PUT, 3, b"xyz")]
    assert not assembler.mid_frame


@pytest.mark.parametrize(
    ("header", "code", "message"),
    [
        (b"XX" + p.encode_frame(1, 1, 0)[2:], ErrorCode.BAD_MAGIC, "bad frame magic b'XX', expected b'KV'"),
        (p.HEADER.pack(p.MAGIC, 9, 1, 1, 0), ErrorCode.UNSUPPORTED_VERSION,
         "protocol version 9 not supported; this side speaks version 1"),
        (p.encode_frame(1, 1, 1 << 40), ErrorCode.TOO_LARGE,
         "frame of 1099511627776 bytes exceeds the limit of 1024 bytes"),
    ],
)
def test_bad_headers(header, code, message):
    assembler = FrameAssembler(lambda *a: None, 1024)
    with pytest.raises(ProtocolError) as err:
        feed(assembler, header, 64)
    assert (err.value.code, err.value.message) == (code, message)


def test_warm_flag_travels_in_put_and_alloc_requests():
    metas = p.decode_put_request(p.encode_put_request([(1, 5, 1), (2, None, 1)], warm=True) + b"ab", limit=4)
    assert [(m.warm, m.crc) for m in metas] == [(True, 5), (True, None)]
    assert p.decode_shm_alloc_request(p.encode_shm_alloc_request([(7, 100)], warm=True), 4) == [(7, 100, True)]
    assert p.decode_shm_alloc_request(p.encode_shm_alloc_request([(7, 100)]), 4) == [(7, 100, False)]
