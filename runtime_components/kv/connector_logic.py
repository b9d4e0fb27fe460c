"""What the vLLM KV connector decides, without vLLM: the scheduler half and the worker half.

`vllm_connector.AIBrixKVConnector` is a thin shell that vLLM loads; it forwards each hook
here. Keeping the logic free of vLLM and torch lets it run against small fakes of the objects
vLLM passes (requests, KVCacheBlocks, SchedulerOutput, paged KV tensors).

Unit of transfer: one vLLM KV block (``block_size`` tokens) across all attention layers of
this worker, stored in the pool under the chained prefix hash of its tokens
(`runtime_components.common.hashing.block_hashes`, salted with the model and LoRA name;
tensor-parallel rank r > 0 mixes r into the key because each rank holds other heads). The
blob is the layers' bytes for that block, concatenated in registration order.

Scheduler half, per request:
- ``get_num_new_matched_tokens``: leading prompt blocks the pool holds, minus what the local
  prefix cache already covers; at least one prompt token is always left to compute, as vLLM
  requires. Side-effect free apart from remembering the answer's basis.
- ``update_state_after_alloc``: with ``num_external_tokens > 0``, queue a load of those
  blocks into the block ids vLLM just allocated.
- ``build_connector_meta``: hand the queued loads to the workers, plus a save of every prompt
  block that becomes complete in this step (chunked prefill saves block by block) and was
  neither cached locally nor loaded.
- ``request_finished``: forget the request; saves are synchronous within the step
  (``wait_for_save``), so vLLM may free the blocks at once (returns False).

Worker half: ``start_load_kv`` fetches each load's blocks and writes every layer's slice
into the paged cache before the forward pass (``wait_for_layer_load`` then has nothing to
wait for); ``save_kv_layer`` copies the blocks to save out of each layer as the forward pass
produces them; ``wait_for_save`` puts the assembled blobs. A block missing at load time (evicted since
the lookup, member dead) is reported through ``get_block_ids_with_load_errors`` with every
block after it, and vLLM recomputes them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aibrix_spec.components.kv import KVClientConfig
from runtime_components.common.hashing import block_hashes
from runtime_components.kv.members import mix64

__all__ = [
    "LoadSpec",
    "PoolConnectorMetadata",
    "PoolConnectorScheduler",
    "PoolConnectorWorker",
    "SaveSpec",
    "TensorOps",
    "client_config_from_extra",
    "rank_key",
]

_RANK_MIX = 0x9E3779B97F4A7C15


def rank_key(key: int, rank: int) -> int:
    """The pool key of a block's shard on tensor-parallel ``rank`` (rank 0 keeps the prefix hash)."""
    return key if rank == 0 else mix64(key ^ (rank * _RANK_MIX & ((1 << 64) - 1)))


def client_config_from_extra(extra: dict[str, Any], environ: dict[str, str] | None = None) -> KVClientConfig:
    """The pool client's config from ``kv_connector_extra_config``.

    Accepted keys: ``pool_config`` (path to a KVPoolConfig YAML with a `client:` block),
    ``members`` ("host:port,host:port" or a list), or ``dns_name`` (+ ``port``); optional
    ``timeout_ms``. Without any, the path in $AIBRIX_KV_POOL_CONFIG is used.
    """
    environ = dict(os.environ) if environ is None else environ
    path = extra.get("pool_config") or environ.get("AIBRIX_KV_POOL_CONFIG")
    if path:
        from runtime_components.kv.cli import load_pool_config  # yaml only when a file is used

        pool = load_pool_config(path)
        if pool.client is None:
            raise ValueError(f"{path}: no `client:` block; the connector needs the pool's members")
        return pool.client
    members = extra.get("members")
    settings: dict[str, Any] = {}
    if members:
        static = [m.strip() for m in members.split(",")] if isinstance(members, str) else list(members)
        settings["members"] = {"source": "static", "static": static}
    elif extra.get("dns_name"):
        settings["members"] = {"source": "dns", "dnsName": extra["dns_name"], "port": int(extra.get("port", 9600))}
    else:
        raise ValueError(
            "kv_connector_extra_config names no pool: give pool_config (a KVPoolConfig file), "
            "members ('host:port,...') or dns_name (the pool's headless Service), or set AIBRIX_KV_POOL_CONFIG"
        )
    if "timeout_ms" in extra:
        settings["timeoutMs"] = float(extra["timeout_ms"])
    return KVClientConfig.model_validate(settings)


# -- metadata (scheduler -> workers; must pickle) --------------------------------------------


@dataclass
class LoadSpec:
    req_id: str
    block_ids: list[int]
    keys: list[int]


@dataclass
class SaveSpec:
    req_id: str
    block_ids: list[int]
    keys: list[int]
    warm: bool = False  #: the request reused a cached prefix: these blocks extend it (eviction hint)


@dataclass
class PoolConnectorMetadata:
    loads: list[LoadSpec] = field(default_factory=list)
    saves: list[SaveSpec] = field(default_factory=list)


# -- scheduler half --------------------------------------------------------------------------


class PrefixIndex(Protocol):
    def lookup_prefix(self, keys: Sequence[int]) -> int: ...


@dataclass
class _Tracked:
    keys: list[int]
    n_prompt: int
    block_ids: list[int]
    saved: int  # leading prompt blocks already in the pool, cached locally, or queued for saving
    reused: bool  # the request started from a cached or loaded prefix


class PoolConnectorScheduler:
    """Scheduler-side decisions (one instance per engine)."""

    def __init__(self, pool: PrefixIndex, block_size: int, salt: str) -> None:
        self.pool = pool
        self.block_size = block_size
        self.salt = salt
        self._keys: dict[str, list[int]] = {}
        self._local_tokens: dict[str, int] = {}
        self._pending_loads: list[LoadSpec] = []
        self._tracked: dict[str, _Tracked] = {}

    def _salt_of(self, request: Any) -> str:
        lora = getattr(request, "lora_request", None)
        return f"{self.salt}|{lora.lora_name}" if lora is not None else self.salt

    def _prompt_keys(self, request: Any) -> list[int]:
        keys = self._keys.get(request.request_id)
        if keys is None:
            keys = block_hashes(list(request.prompt_token_ids or []), self.block_size, self._salt_of(request))
            self._keys[request.request_id] = keys
        return keys

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        keys = self._prompt_keys(request)
        loadable = max(0, (len(request.prompt_token_ids or []) - 1) // self.block_size)
        first = num_computed_tokens // self.block_size
        self._local_tokens[request.request_id] = num_computed_tokens
        if loadable <= first:
            return 0, False
        held = self.pool.lookup_prefix(keys[:loadable])
        return max(0, held * self.block_size - num_computed_tokens), False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        if num_external_tokens <= 0:
            return
        block_ids = list(blocks.get_block_ids()[0])
        first = self._local_tokens.get(request.request_id, 0) // self.block_size
        count = num_external_tokens // self.block_size
        keys = self._prompt_keys(request)[first : first + count]
        self._pending_loads.append(LoadSpec(request.request_id, block_ids[first : first + count], keys))

    def build_connector_meta(self, scheduler_output: Any) -> PoolConnectorMetadata:
        meta = PoolConnectorMetadata(loads=self._pending_loads)
        self._pending_loads = []
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            prompt = list(new.prompt_token_ids or [])
            keys = self._keys.get(new.req_id) or block_hashes(prompt, self.block_size, self._salt_of(new))
            already = new.num_computed_tokens // self.block_size
            started = _Tracked(keys, len(prompt), list(new.block_ids[0]), min(already, len(keys)), already > 0)
            self._tracked[new.req_id] = started
            self._plan_save(meta, new.req_id, started, new.num_computed_tokens + scheduled.get(new.req_id, 0))
        cached = scheduler_output.scheduled_cached_reqs
        resumed = set(getattr(cached, "resumed_req_ids", ()) or ())
        for i, req_id in enumerate(cached.req_ids):
            tracked = self._tracked.get(req_id)
            if tracked is None:
                continue
            new_ids = cached.new_block_ids[i]
            if new_ids is not None:
                if req_id in resumed:  # after preemption the list is the request's whole new allocation
                    tracked.block_ids = list(new_ids[0])
                else:
                    tracked.block_ids.extend(new_ids[0])
            self._plan_save(meta, req_id, tracked, cached.num_computed_tokens[i] + scheduled.get(req_id, 0))
        return meta

    def _plan_save(self, meta: PoolConnectorMetadata, req_id: str, tracked: _Tracked, computed_after: int) -> None:
        complete = min(min(computed_after, tracked.n_prompt) // self.block_size, len(tracked.keys), len(tracked.block_ids))
        if complete > tracked.saved:
            meta.saves.append(SaveSpec(
                req_id, tracked.block_ids[tracked.saved : complete], tracked.keys[tracked.saved : complete], tracked.reused
            ))
            tracked.saved = complete

    def request_finished(self, request: Any, block_ids: Sequence[int]) -> tuple[bool, dict[str, Any] | None]:
        for table in (self._keys, self._local_tokens, self._tracked):
            table.pop(request.request_id, None)
        return False, None


# -- worker half -----------------------------------------------------------------------------


class BlockPoolClient(Protocol):
    def get(self, keys: Sequence[int]) -> list[memoryview | None]: ...
    def put(self, blocks: Sequence[tuple[int, bytes | memoryview]], *, warm: bool = False) -> list[int | None]: ...


class TensorOps(Protocol):
    """Moves whole blocks between a paged KV tensor (any device, any layout) and host bytes."""

    def block_dim(self, layer: Any, num_blocks: int) -> int:
        """Which dimension of the layer's tensor indexes blocks."""

    def block_bytes(self, layer: Any, block_dim: int) -> int:
        """Bytes one block of this layer occupies."""

    def extract(self, layer: Any, block_dim: int, block_ids: Sequence[int]) -> list[memoryview]:
        """Host bytes of each block (a copy: the paged buffer may be overwritten after the step)."""

    def inject(self, layer: Any, block_dim: int, block_ids: Sequence[int], blobs: Sequence[memoryview]) -> None:
        """Write each block's bytes into the paged buffer."""


class PoolConnectorWorker:
    """Worker-side transfers (one instance per worker process / TP rank)."""

    def __init__(self, pool: BlockPoolClient, ops: TensorOps, *, rank: int, num_blocks: int, block_dim: int | None = None):
        self.pool = pool
        self.ops = ops
        self.rank = rank
        self.num_blocks = num_blocks
        self._block_dim_override = block_dim
        self.layers: dict[str, Any] = {}
        self.block_dims: dict[str, int] = {}
        self.layer_bytes: dict[str, int] = {}
        self.blob_bytes = 0
        self._saving: dict[tuple[str, int], list[memoryview]] = {}  # (req, block idx) -> layer parts
        self.load_errors: set[int] = set()
        self.stats = {"loaded_blocks": 0, "saved_blocks": 0, "failed_blocks": 0}

    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        self.layers = dict(kv_caches)
        self.block_dims = {
            name: self._block_dim_override if self._block_dim_override is not None else self.ops.block_dim(t, self.num_blocks)
            for name, t in self.layers.items()
        }
        self.layer_bytes = {name: self.ops.block_bytes(t, self.block_dims[name]) for name, t in self.layers.items()}
        self.blob_bytes = sum(self.layer_bytes.values())

    def start_load_kv(self, meta: PoolConnectorMetadata) -> None:
        for load in meta.loads:
            blobs = self.pool.get([rank_key(k, self.rank) for k in load.keys])
            usable = 0  # a blob of the wrong size (other model, other layout) counts as missing
            while usable < len(blobs) and (blob := blobs[usable]) is not None and len(blob) == self.blob_bytes:
                usable += 1
            if usable < len(blobs):  # a hole: this block and every later one must be recomputed
                self.load_errors.update(load.block_ids[usable:])
                self.stats["failed_blocks"] += len(blobs) - usable
            if usable == 0:
                continue
            offset = 0
            for name, layer in self.layers.items():
                size = self.layer_bytes[name]
                parts = [blob[offset : offset + size] for blob in blobs[:usable] if blob is not None]
                self.ops.inject(layer, self.block_dims[name], load.block_ids[:usable], parts)
                offset += size
            self.stats["loaded_blocks"] += usable

    def wait_for_layer_load(self, layer_name: str) -> None:
        return None  # start_load_kv finished every layer before the forward pass began

    def save_kv_layer(self, layer_name: str, kv_layer: Any, meta: PoolConnectorMetadata) -> None:
        for save in meta.saves:
            parts = self.ops.extract(kv_layer, self.block_dims.get(layer_name, 0), save.block_ids)
            for i, part in enumerate(parts):
                self._saving.setdefault((save.req_id, i), []).append(part)

    def wait_for_save(self, meta: PoolConnectorMetadata) -> None:
        by_warmth: dict[bool, list[tuple[int, bytes]]] = {False: [], True: []}
        for save in meta.saves:
            for i, key in enumerate(save.keys):
                parts = self._saving.get((save.req_id, i))
                if parts and len(parts) == len(self.layers):
                    by_warmth[save.warm].append((rank_key(key, self.rank), b"".join(parts)))
        self._saving.clear()
        for warm, blocks in by_warmth.items():
            if blocks:
                self.pool.put(blocks, warm=warm)
                self.stats["saved_blocks"] += len(blocks)

    def take_load_errors(self) -> set[int]:
        errors, self.load_errors = self.load_errors, set()
        return errors
