"""Prefix indexes and session tables that record their local changes in an outbox.

A local change (``add`` from ``on_routed``, ``remove`` after a failed request, ...) updates the
object and appends one event to the ``Outbox``; ``apply`` replays another process's event on
the object without publishing it again. An event carries at most ``max_blocks`` hashes (the
leading ones): beyond that depth other processes see a shorter match, this one the full one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..policy.prefix import PrefixIndex
from ..policy.session import SessionTable
from . import codec

__all__ = ["Outbox", "SharedPrefixIndex", "SharedSessionTable"]


class Outbox:
    """Events waiting for the next flush; bounded (the oldest are dropped and counted)."""

    def __init__(self, max_events: int = 50_000) -> None:
        self.events: list[list[Any]] = []
        self.max_events = max_events
        self.dropped = 0
        #: called when the outbox goes from empty to non-empty (the sync schedules a flush)
        self.on_first: Callable[[], None] | None = None

    def append(self, event: list[Any]) -> None:
        if not self.events and self.on_first is not None:
            self.on_first()
        self.events.append(event)
        if len(self.events) > self.max_events:
            del self.events[0]
            self.dropped += 1

    def drain(self) -> list[list[Any]]:
        events, self.events = self.events, []
        return events


class SharedPrefixIndex(PrefixIndex):
    """A ``PrefixIndex`` whose local changes are published."""

    def __init__(self, key: str, max_entries: int, outbox: Outbox, max_blocks: int) -> None:
        super().__init__(max_entries)
        self.key = key
        self._outbox = outbox
        self._max_blocks = max_blocks

    def add(self, hashes: Sequence[int], address: str) -> None:
        super().add(hashes, address)
        if hashes:
            self._outbox.append([codec.PREFIX_ADD, self.key, address, list(hashes[: self._max_blocks])])

    def remove(self, hashes: Sequence[int], address: str) -> None:
        super().remove(hashes, address)
        if hashes:
            self._outbox.append([codec.PREFIX_REMOVE, self.key, address, list(hashes[: self._max_blocks])])

    def forget(self, address: str) -> None:
        super().forget(address)
        self._outbox.append([codec.PREFIX_FORGET, self.key, address])

    def apply(self, event: list[Any]) -> None:
        kind = event[0]
        if kind == codec.PREFIX_ADD:
            PrefixIndex.add(self, event[3], event[2])
        elif kind == codec.PREFIX_REMOVE:
            PrefixIndex.remove(self, event[3], event[2])
        elif kind == codec.PREFIX_FORGET:
            PrefixIndex.forget(self, event[2])


class SharedSessionTable(SessionTable):
    """A ``SessionTable`` whose local changes are published."""

    def __init__(self, key: str, max_sessions: int, outbox: Outbox) -> None:
        super().__init__(max_sessions)
        self.key = key
        self._outbox = outbox

    def bind(self, session: str, address: str) -> None:
        super().bind(session, address)
        self._outbox.append([codec.SESSION_BIND, self.key, session, address])

    def unbind(self, session: str, address: str) -> None:
        super().unbind(session, address)
        self._outbox.append([codec.SESSION_UNBIND, self.key, session, address])

    def forget(self, address: str) -> None:
        super().forget(address)
        self._outbox.append([codec.SESSION_FORGET, self.key, address])

    def apply(self, event: list[Any]) -> None:
        kind = event[0]
        if kind == codec.SESSION_BIND:
            SessionTable.bind(self, event[2], event[3])
        elif kind == codec.SESSION_UNBIND:
            SessionTable.unbind(self, event[2], event[3])
        elif kind == codec.SESSION_FORGET:
            SessionTable.forget(self, event[2])
