"""Our KV-event decoder against frames recorded from vLLM 0.32's own publisher (see
``record_kv_events.py``), and our encoder (the simulated engine's) against vLLM's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime_components.common.kv_event_format import (
    END_SEQ,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventFormatError,
    decode_batch,
    decode_seq,
    encode_batch,
)

RECORDED = json.loads((Path(__file__).parent / "vllm_0_32" / "kv_events.json").read_text())


def _frames(message: list[str]) -> list[bytes]:
    return [bytes.fromhex(f) for f in message]


def _as_expected(event: object) -> dict[str, object]:
    if isinstance(event, BlockStored):
        return {"type": "BlockStored", "block_hashes": list(event.block_hashes), "parent_block_hash": event.parent_block_hash,
                "token_ids": list(event.token_ids), "block_size": event.block_size, "lora_name": event.lora_name}
    if isinstance(event, BlockRemoved):
        return {"type": "BlockRemoved", "block_hashes": list(event.block_hashes)}
    assert isinstance(event, AllBlocksCleared)
    return {"type": "AllBlocksCleared"}


def test_recorded_messages_are_topic_seq_payload_and_decode_to_what_vllm_published():
    for seq, (message, expected) in enumerate(zip(RECORDED["messages"], RECORDED["expected"], strict=True)):
        topic, seq_frame, payload = _frames(message)
        assert topic == b"kv" and decode_seq(seq_frame) == seq
        batch = decode_batch(payload)
        assert batch.ts == expected["ts"] and batch.data_parallel_rank == 0
        assert [_as_expected(e) for e in batch.events] == expected["events"]
    assert RECORDED["expected"][0]["events"][0]["block_hashes"][0] == 2**64 - 5  # unsigned 64-bit survives


def test_the_replay_socket_answers_buffered_batches_then_the_end_marker():
    replay = [_frames(m) for m in RECORDED["replay_from_1"]]
    assert [decode_seq(m[2]) for m in replay] == [1, 2, END_SEQ]
    assert all(m[0] == b"" for m in replay)
    assert replay[0][3] == _frames(RECORDED["messages"][1])[2]


@pytest.mark.parametrize("index", [0, 2])  # batch 1 names an adapter: vLLM's lora_id is its load order
def test_our_encoder_writes_vllms_bytes(index):
    payload = _frames(RECORDED["messages"][index])[2]
    assert encode_batch(decode_batch(payload)) == payload


@pytest.mark.parametrize(("payload", "message"), [
    (b"\xc1", "payload is not msgpack"),
    (bytes([0x81, 0xa1, 0x61, 0x01]), "batch: expected an array [ts, events, dp_rank], got dict"),
    (bytes([0x92, 0x01, 0x91, 0x81, 0xa4]) + b"type" + bytes([0xa3]) + b"Foo",
     "events[0].type: unknown event 'Foo'; expected BlockStored, BlockRemoved or AllBlocksCleared"),
])
def test_a_bad_payload_is_one_clear_error(payload, message):
    with pytest.raises(EventFormatError) as info:
        decode_batch(payload)
    assert str(info.value).startswith(message)


def test_a_short_sequence_frame_is_an_error():
    with pytest.raises(EventFormatError, match="expected 8 bytes"):
        decode_seq(b"\x00\x01")
