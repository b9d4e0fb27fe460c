"""Which pool member holds a block: member sources and rendezvous (highest-random-weight) hashing.

Rendezvous hashing: block ``key`` lives on the member maximising

    weight(member, key) = mix64(key XOR seed(member)),  seed = first 8 bytes of BLAKE2b(member)

where mix64 is the SplitMix64 finaliser (a bijection with full avalanche). Every client
computes the same owner with no coordination; when a member leaves, only its keys move
(each to its runner-up), and a member joining takes ~1/n of the keys from each other.

Members come from a static list or the A records of the pool's headless Service (one per
ready pod), resolved again every ``refresh_seconds``; a failed resolution keeps the last
answer, so a DNS blip never empties the pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aibrix_spec.components.kv import MembersConfig

__all__ = ["DnsMembers", "MemberSource", "StaticMembers", "member_seed", "mix64", "owner", "rank", "source_from_config"]

_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """SplitMix64 finaliser: 64-bit in, 64-bit out, every input bit flips ~half the output bits."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def member_seed(member: str) -> int:
    return int.from_bytes(hashlib.blake2b(member.encode("utf-8"), digest_size=8).digest(), "little")


def rank(key: int, members: list[tuple[str, int]]) -> list[str]:
    """Members (name, seed) ordered by weight for ``key``, best first."""
    return [name for _, name in sorted(((mix64(key ^ seed), name) for name, seed in members), reverse=True)]


def owner(key: int, members: list[tuple[str, int]]) -> str:
    """The member with the highest weight for ``key`` (members must not be empty)."""
    best_name, best_weight = "", -1
    for name, seed in members:
        weight = mix64(key ^ seed)
        if weight > best_weight:
            best_name, best_weight = name, weight
    return best_name


class MemberSource(Protocol):
    """Where the current members (`host:port` strings) come from."""

    async def members(self) -> list[str]: ...


class StaticMembers:
    def __init__(self, members: list[str]) -> None:
        self._members = sorted(members)

    async def members(self) -> list[str]:
        return list(self._members)


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _resolve_a_records(name: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class DnsMembers:
    """Members from a headless Service's A records, cached for ``refresh_seconds``."""

    def __init__(
        self,
        name: str,
        port: int,
        refresh_seconds: float,
        *,
        resolver: Resolver = _resolve_a_records,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name, self._port, self._refresh = name, port, refresh_seconds
        self._resolver, self._clock = resolver, clock
        self._cached: list[str] = []
        self._expires = float("-inf")
        self.failures = 0

    async def members(self) -> list[str]:
        if self._clock() >= self._expires:
            self._expires = self._clock() + self._refresh
            try:
                ips = await self._resolver(self._name, self._port)
            except OSError:
                self.failures += 1
            else:
                self._cached = [f"[{ip}]:{self._port}" if ":" in ip else f"{ip}:{self._port}" for ip in ips]
        return list(self._cached)


def source_from_config(config: MembersConfig, *, resolver: Resolver | None = None) -> MemberSource:
    if config.source == "static":
        return StaticMembers(config.static)
    return DnsMembers(config.dns_name, config.port, config.refresh_seconds, resolver=resolver or _resolve_a_records)
