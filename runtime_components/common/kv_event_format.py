"""vLLM's KV-cache event wire format: the contract between engines and the gateway's index.

vLLM 0.32 (``vllm/distributed/kv_events.py``) publishes, with ``--kv-events-config
'{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://*:5557"}'``, one
ZMQ multipart message per engine step on a PUB socket::

    [topic (utf-8, "" by default), seq (8 bytes, big-endian, from 0), payload]

``payload`` is msgspec's msgpack of a ``KVEventBatch``, an *array-like* struct
``[ts, events, data_parallel_rank]``; each event is a *map* tagged by ``"type"`` with its
class name (msgspec ``tag=True``), fields after the required ones omitted when default:

- ``BlockStored``: ``block_hashes`` (list), ``parent_block_hash`` (or nil), ``token_ids``
  (all the stored blocks' tokens, concatenated), ``block_size``, ``lora_id``, ``medium``,
  ``lora_name``, then optional ``extra_keys``, ``group_idx``, ``kv_cache_spec_kind``, ...
- ``BlockRemoved``: ``block_hashes``, ``medium``, optional ``group_idx`` ...
- ``AllBlocksCleared``: no fields.

A block hash is an unsigned 64-bit int (``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``, the
default) or bytes; both are kept as they come (``EngineHash``), they are only keys. The
optional replay socket (``replay_endpoint``, a ROUTER) answers ``[b"", seq (8 bytes)]`` from
a DEALER/REQ with every buffered ``[b"", topic, seq, payload]`` from that seq on, then
``[b"", b"", seq=-1, b""]``.

``tests/contracts/vllm_0_32/kv_events.json`` holds frames recorded from vLLM's own
publisher; the simulated engine encodes with ``encode_batch`` below and must match them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = [
    "END_SEQ",
    "AllBlocksCleared",
    "BlockRemoved",
    "BlockStored",
    "EngineHash",
    "EventBatch",
    "EventFormatError",
    "KVEvent",
    "decode_batch",
    "decode_seq",
    "encode_batch",
    "encode_seq",
    "stored_blocks",
]

EngineHash = int | bytes
END_SEQ = -1  #: the replay socket's end-of-replay marker


class EventFormatError(ValueError):
    """A payload is not a KV event batch; the message says what was found where."""


@dataclass(frozen=True)
class BlockStored:
    """Full blocks an engine now holds: ``block_hashes[i]`` covers
    ``token_ids[i*block_size:(i+1)*block_size]``; the first block's parent is ``parent_block_hash``."""

    block_hashes: tuple[EngineHash, ...]
    parent_block_hash: EngineHash | None
    token_ids: tuple[int, ...]
    block_size: int
    lora_name: str | None = None
    medium: str | None = None


@dataclass(frozen=True)
class BlockRemoved:
    block_hashes: tuple[EngineHash, ...]
    medium: str | None = None


@dataclass(frozen=True)
class AllBlocksCleared:
    pass


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True)
class EventBatch:
    ts: float
    events: tuple[KVEvent, ...]
    data_parallel_rank: int | None = None


def encode_seq(seq: int) -> bytes:
    return seq.to_bytes(8, "big", signed=True)


def decode_seq(frame: bytes) -> int:
    if len(frame) != 8:
        raise EventFormatError(f"sequence frame: expected 8 bytes (big-endian int), got {len(frame)}")
    return int.from_bytes(frame, "big", signed=True)


def encode_batch(batch: EventBatch) -> bytes:
    """msgpack exactly as vLLM's msgspec encoder writes a ``KVEventBatch``."""
    events: list[dict[str, Any]] = []
    for ev in batch.events:
        if isinstance(ev, BlockStored):
            lora_id = None if ev.lora_name is None else _lora_id(ev.lora_name)
            events.append({
                "type": "BlockStored", "block_hashes": list(ev.block_hashes),
                "parent_block_hash": ev.parent_block_hash, "token_ids": list(ev.token_ids),
                "block_size": ev.block_size, "lora_id": lora_id, "medium": ev.medium, "lora_name": ev.lora_name,
                "group_idx": 0,
            })  # fmt: skip
        elif isinstance(ev, BlockRemoved):
            events.append({"type": "BlockRemoved", "block_hashes": list(ev.block_hashes), "medium": ev.medium,
                           "group_idx": 0})
        else:
            events.append({"type": "AllBlocksCleared"})
    return msgpack.packb([batch.ts, events, batch.data_parallel_rank], use_bin_type=True)


def _lora_id(name: str) -> int:
    # vLLM numbers adapters by load order; the simulator has no such number, a stable one will do.
    return 1 + int.from_bytes(name.encode("utf-8")[:4].ljust(4, b"\0"), "big") % 1_000_000


def decode_batch(payload: bytes) -> EventBatch:
    """Decode one payload; raise ``EventFormatError`` naming the first thing that does not fit."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise EventFormatError(f"payload is not msgpack: {exc}") from None
    if not isinstance(raw, list) or len(raw) < 2:
        raise EventFormatError(f"batch: expected an array [ts, events, dp_rank], got {type(raw).__name__}")
    ts, events = raw[0], raw[1]
    rank = raw[2] if len(raw) > 2 else None
    if not isinstance(ts, int | float) or not isinstance(events, list):
        raise EventFormatError("batch: expected [ts (number), events (array), ...]")
    return EventBatch(float(ts), tuple(_event(e, i) for i, e in enumerate(events)),
                      rank if isinstance(rank, int) else None)


def _event(raw: object, index: int) -> KVEvent:
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise EventFormatError(f"{where}: expected a map tagged by 'type', got {type(raw).__name__}")
    kind = raw.get("type")
    if kind == "BlockStored":
        hashes = _hashes(raw, where)
        tokens = raw.get("token_ids")
        size = raw.get("block_size")
        parent = raw.get("parent_block_hash")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise EventFormatError(f"{where}.token_ids: expected an array of ints")
        if not isinstance(size, int) or size < 1:
            raise EventFormatError(f"{where}.block_size: expected a positive int, got {size!r}")
        if parent is not None and not isinstance(parent, int | bytes):
            raise EventFormatError(f"{where}.parent_block_hash: expected an int, bytes or nil")
        lora = raw.get("lora_name")
        medium = raw.get("medium")
        return BlockStored(hashes, parent, tuple(tokens), size, lora if isinstance(lora, str) else None,
                           medium if isinstance(medium, str) else None)
    if kind == "BlockRemoved":
        medium = raw.get("medium")
        return BlockRemoved(_hashes(raw, where), medium if isinstance(medium, str) else None)
    if kind == "AllBlocksCleared":
        return AllBlocksCleared()
    raise EventFormatError(f"{where}.type: unknown event {kind!r}; expected BlockStored, BlockRemoved or AllBlocksCleared")


def _hashes(raw: dict[str, Any], where: str) -> tuple[EngineHash, ...]:
    hashes = raw.get("block_hashes")
    if not isinstance(hashes, list) or not all(isinstance(h, int | bytes) for h in hashes):
        raise EventFormatError(f"{where}.block_hashes: expected an array of ints or bytes")
    return tuple(hashes)


def stored_blocks(event: BlockStored) -> Sequence[tuple[EngineHash, tuple[int, ...]]]:
    """Each stored block's engine hash with its tokens (a short tail, if any, is dropped)."""
    size = event.block_size
    return [(h, event.token_ids[i * size:(i + 1) * size]) for i, h in enumerate(event.block_hashes)
            if len(event.token_ids) >= (i + 1) * size]
