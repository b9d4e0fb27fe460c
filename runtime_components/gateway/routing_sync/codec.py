"""The wire format of routing-state batches: msgpack ``[origin, [event, ...]]``.

Events are short lists whose first item is the kind:

    [PREFIX_ADD,    key, address, [hash, ...]]   an address was sent these blocks (root first)
    [PREFIX_REMOVE, key, address, [hash, ...]]   a failed request: forget these blocks there
    [PREFIX_FORGET, key, address]                discovery dropped the address
    [SESSION_BIND,  key, session, address]
    [SESSION_UNBIND, key, session, address]      only if still bound to that address
    [SESSION_FORGET, key, address]

``key`` names the object (``model|block size`` or ``model|header``), ``origin`` the sending
process, so a process skips its own batches when a transport echoes them.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = [
    "PREFIX_ADD",
    "PREFIX_FORGET",
    "PREFIX_REMOVE",
    "SESSION_BIND",
    "SESSION_FORGET",
    "SESSION_UNBIND",
    "BadBatch",
    "decode_batch",
    "encode_batch",
]

PREFIX_ADD, PREFIX_REMOVE, PREFIX_FORGET, SESSION_BIND, SESSION_UNBIND, SESSION_FORGET = range(6)
_ARITY = {PREFIX_ADD: 4, PREFIX_REMOVE: 4, PREFIX_FORGET: 3, SESSION_BIND: 4, SESSION_UNBIND: 4, SESSION_FORGET: 3}


class BadBatch(ValueError):
    """A batch that is not in this format (another program on the stream, a newer version)."""


def encode_batch(origin: str, events: list[list[Any]]) -> bytes:
    return msgpack.packb([origin, events], use_bin_type=True)


def decode_batch(payload: bytes) -> tuple[str, list[list[Any]]]:
    try:
        origin, events = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BadBatch(f"not a routing-state batch: {exc}") from None
    if not isinstance(origin, str) or not isinstance(events, list):
        raise BadBatch("not a routing-state batch: expected [origin, [events]]")
    for event in events:
        if not isinstance(event, list) or not event or _ARITY.get(event[0]) != len(event):
            raise BadBatch(f"unknown routing-state event {str(event)[:80]}")
    return origin, events
