"""The pool as the simulated engine's external KV store (`engine_sim.config.ExternalKVStore`).

Two adapters with the same three methods (``lookup``, ``store``, ``transfer_seconds``):

- `InProcessPool`: the pool's own eviction index (`SizedCache`), one per member, keys placed
  by the same rendezvous hashing as the real client; no bytes, no sockets. Fast enough for
  discrete-event sweeps of many engines sharing one pool.
- `ClientPool`: the real client against real members (loopback in tests). Each stored block
  carries a small token payload; presence is what the simulation needs.

Transfer cost of loading ``n`` blocks into an engine (``TransferModel``):

    seconds = stages * latency_s + n * block_bytes / (bandwidth_gbs * 1e9)
    block_bytes = block_size * kv_bytes_per_token(model)   (catalogue: 2 * layers * kv_heads * head_dim * 2)

There is no default bandwidth or latency: the caller passes what it measured (``benchmarks/kv.py``
measures both against a real member in the same run). ``stages`` is the number of layer groups
the vLLM connector loads one after the other (one get, so one round trip, each); the adapters
expose it as ``load_stages``, and the simulated engine then overlaps the load with the forward
pass stage by stage (``engine_sim.core``).

A lookup counts as a read of the blocks it finds (refreshing them in the eviction order): the
engine asks only when it is about to load them. The first block a lookup misses after a hit
is remembered as a *frontier*: when the engine later stores it, that block and the ones after
it in the same call are stored warm (they extend a prefix just read: the eviction admission
hint of `eviction.S3FifoPolicy`, which the adaptive default passes on).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from aibrix_spec.catalog import model_arch
from runtime_components.kv.cache import SizedCache
from runtime_components.kv.client import BlockingKVPoolClient
from runtime_components.kv.members import member_seed, owner

__all__ = ["ClientPool", "InProcessPool", "TransferModel"]

_FRONTIER_LIMIT = 100_000  # remembered frontiers (oldest forgotten first)


class _Frontiers:
    """Blocks that would extend a prefix just read, remembered between lookup and store."""

    def __init__(self) -> None:
        self._keys: OrderedDict[int, None] = OrderedDict()

    def after_lookup(self, block_hashes: Sequence[int], held: int) -> None:
        if 0 < held < len(block_hashes):
            self._keys[block_hashes[held]] = None
            if len(self._keys) > _FRONTIER_LIMIT:
                self._keys.popitem(last=False)

    def split(self, block_hashes: Sequence[int]) -> tuple[list[int], list[int]]:
        """(cold, warm): everything from the first remembered frontier on is warm."""
        for i, key in enumerate(block_hashes):
            if key in self._keys:
                del self._keys[key]
                return list(block_hashes[:i]), list(block_hashes[i:])
        return list(block_hashes), []


@dataclass(frozen=True)
class TransferModel:
    """Time to move KV blocks from the pool into an engine's GPU memory."""

    block_bytes: int
    bandwidth_gbs: float  #: pool -> engine rate, measured
    latency_s: float  #: one get's round trip, measured
    stages: int = 1  #: layer groups loaded one after the other (a round trip each), overlapped with compute

    def __post_init__(self) -> None:
        if self.bandwidth_gbs <= 0 or self.latency_s < 0 or self.stages < 1:
            raise ValueError(f"transfer model needs bandwidth > 0, latency >= 0 and stages >= 1, got {self}")

    @classmethod
    def for_model(cls, arch: str, block_size: int, *, bandwidth_gbs: float, latency_s: float, stages: int = 1) -> TransferModel:
        return cls(block_size * model_arch(arch).kv_bytes_per_token, bandwidth_gbs, latency_s, stages)

    def seconds(self, n_blocks: int) -> float:
        if n_blocks <= 0:
            return 0.0
        return self.stages * self.latency_s + n_blocks * self.block_bytes / (self.bandwidth_gbs * 1e9)


class InProcessPool:
    """``members`` eviction indexes of ``capacity_bytes / members`` each, shared by every engine."""

    def __init__(self, capacity_bytes: int, transfer: TransferModel, *, members: int = 1, policy: str = "adaptive"):
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        names = [f"member-{i}" for i in range(members)]
        self._members = [(name, member_seed(name)) for name in names]
        self.caches = {name: SizedCache(capacity_bytes // members, policy) for name in names}
        self.transfer = transfer
        self.load_stages = transfer.stages
        self._frontiers = _Frontiers()

    def _cache(self, key: int) -> SizedCache:
        return self.caches[owner(key, self._members)]

    def lookup(self, block_hashes: Sequence[int]) -> int:
        held = 0
        for key in block_hashes:
            if not self._cache(key).lookup(key):
                break
            held += 1
        self._frontiers.after_lookup(block_hashes, held)
        return held

    def store(self, block_hashes: Sequence[int]) -> None:
        cold, warm = self._frontiers.split(block_hashes)
        for keys, is_warm in ((cold, False), (warm, True)):
            for key in keys:
                self._cache(key).insert(key, self.transfer.block_bytes, is_warm)

    def transfer_seconds(self, n_blocks: int) -> float:
        return self.transfer.seconds(n_blocks)

    @property
    def hit_ratio(self) -> float:
        hits = sum(c.stats.hits for c in self.caches.values())
        total = hits + sum(c.stats.misses for c in self.caches.values())
        return hits / total if total else 0.0


class ClientPool:
    """The real pool client behind the simulated engine's store interface."""

    def __init__(self, client: BlockingKVPoolClient, transfer: TransferModel, *, payload_bytes: int = 256) -> None:
        self.client = client
        self.transfer = transfer
        self.load_stages = transfer.stages
        self.payload_bytes = payload_bytes
        self._frontiers = _Frontiers()

    def lookup(self, block_hashes: Sequence[int]) -> int:
        held = self.client.lookup_prefix(list(block_hashes))
        self._frontiers.after_lookup(block_hashes, held)
        return held

    def store(self, block_hashes: Sequence[int]) -> None:
        # The payload names its key so a mix-up between blocks would show in a get.
        for keys, warm in zip(self._frontiers.split(block_hashes), (False, True)):
            if keys:
                self.client.put([(k, k.to_bytes(8, "little") * (self.payload_bytes // 8)) for k in keys], warm=warm)

    def transfer_seconds(self, n_blocks: int) -> float:
        return self.transfer.seconds(n_blocks)
