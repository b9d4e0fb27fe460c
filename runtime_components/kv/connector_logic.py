"""What the vLLM KV connector decides, without vLLM: keys, metadata, options, the scheduler half.

`vllm_connector.AIBrixKVConnector` is a thin shell that vLLM loads; it forwards each hook
here (scheduler side) or to `connector_worker.PoolConnectorWorker` (worker side). Keeping
both free of vLLM and torch lets them run against small fakes of the objects vLLM passes
(requests, KVCacheBlocks, SchedulerOutput, paged KV tensors).

Unit of transfer: one vLLM KV block (``block_size`` tokens), named in the pool by the
chained prefix hash of its tokens (`runtime_components.common.hashing.block_hashes`, salted
with the model and LoRA name; tensor-parallel rank r > 0 mixes r into the key because each
rank holds other heads). The worker stores it as one object per layer group (`part_key`);
group 0 carries the block's own key, which is what the scheduler probes.

Scheduler half, per request:
- ``get_num_new_matched_tokens``: leading prompt blocks the pool holds, minus what the local
  prefix cache already covers; at least one prompt token is always left to compute, as vLLM
  requires. Side-effect free apart from remembering the answer's basis. Loads are
  synchronous for the scheduler (``False``): the worker overlaps them with the forward pass
  layer by layer, which vLLM's API allows only for loads it schedules in the same step.
- ``update_state_after_alloc``: with ``num_external_tokens > 0``, queue a load of those
  blocks into the block ids vLLM just allocated.
- ``build_connector_meta``: hand the queued loads to the workers, plus a save of every prompt
  block that becomes complete in this step (chunked prefill saves block by block) and was
  neither cached locally nor loaded.
- ``request_finished``: forget the request. The worker copies blocks to host memory before
  it sends them, so vLLM may free them at once (returns False) even though the send is still
  on the wire.

Roles (vLLM's ``kv_role``, `ConnectorRole`): ``kv_both`` loads and saves in the background;
``kv_consumer`` (a decode pod) loads and never saves; ``kv_producer`` (a prefill pod) loads
prefix hits too (another prefill pod's work is still work saved) and *hands off*: it saves
every full prompt block, including blocks its local prefix cache served that the pool no
longer holds, and its worker waits for those saves at the end of the forward pass
(`connector_worker`), so the decode request that follows the prefill response finds them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from aibrix_spec.components.kv import KVClientConfig, parse_quantity
from runtime_components.common.hashing import block_hashes
from runtime_components.kv.members import mix64

__all__ = [
    "LoadSpec",
    "PoolConnectorMetadata",
    "PoolConnectorScheduler",
    "ConnectorRole",
    "KV_ROLES",
    "SaveSpec",
    "WorkerOptions",
    "client_config_from_extra",
    "part_key",
    "rank_key",
    "worker_options_from_extra",
]

_RANK_MIX = 0x9E3779B97F4A7C15
_GROUP_MIX = 0xC2B2AE3D27D4EB4F
_MASK64 = (1 << 64) - 1


def rank_key(key: int, rank: int) -> int:
    """The pool key of a block's shard on tensor-parallel ``rank`` (rank 0 keeps the prefix hash)."""
    return key if rank == 0 else mix64(key ^ (rank * _RANK_MIX & _MASK64))


def part_key(key: int, group: int, rank: int) -> int:
    """The pool key of layer group ``group`` of a block on ``rank``. Group 0 keeps the block's
    key (what the scheduler probes); the worker writes it after every other group."""
    return rank_key(key if group == 0 else mix64(key ^ (group * _GROUP_MIX & _MASK64)), rank)


def client_config_from_extra(extra: dict[str, Any], environ: dict[str, str] | None = None) -> KVClientConfig:
    """The pool client's config from ``kv_connector_extra_config``.

    Accepted keys: ``pool_config`` (path to a KVPoolConfig YAML with a `client:` block),
    ``members`` ("host:port,host:port" or a list), or ``dns_name`` (+ ``port``); optional
    ``timeout_ms``, ``connect_timeout_ms`` and ``dead_member_backoff_seconds`` (`KVClientConfig`).
    Without any, the path in $AIBRIX_KV_POOL_CONFIG is used. A bad value raises ValueError
    naming the key.
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
    for key, field_name in _CLIENT_KNOBS.items():
        if key in extra:
            settings[field_name] = extra[key]
    try:
        return KVClientConfig.model_validate(settings)
    except ValidationError as err:
        problem = err.errors()[0]
        key = next((k for k, f in _CLIENT_KNOBS.items() if f in problem["loc"]), ".".join(map(str, problem["loc"])))
        raise ValueError(f"kv_connector_extra_config.{key}: {problem['msg']}, got {problem.get('input')!r}") from None


#: ``kv_connector_extra_config`` keys that set the pool client's timing (`KVClientConfig` fields).
_CLIENT_KNOBS = {
    "timeout_ms": "timeoutMs",
    "connect_timeout_ms": "connectTimeoutMs",
    "dead_member_backoff_seconds": "deadMemberBackoffSeconds",
}


#: vLLM's ``KVTransferConfig.kv_role`` values.
KV_ROLES = ("kv_both", "kv_producer", "kv_consumer")


@dataclass(frozen=True)
class ConnectorRole:
    """What an engine does with the pool, from vLLM's ``kv_role`` (every role loads)."""

    kv_role: str
    saves: bool  #: writes the prompt blocks it computes
    hands_off: bool  #: a prefill pod: every full prompt block is in the pool before the response leaves

    @classmethod
    def from_kv_role(cls, kv_role: str | None) -> ConnectorRole:
        if kv_role not in KV_ROLES:
            raise ValueError(
                f"kv_transfer_config.kv_role: {kv_role!r} is not a role of the AIBrix KV connector; expected one of "
                f"{', '.join(KV_ROLES)} (kv_producer on prefill pods, kv_consumer on decode pods, kv_both otherwise)"
            )
        return cls(kv_role, saves=kv_role != "kv_consumer", hands_off=kv_role == "kv_producer")


KV_BOTH = ConnectorRole.from_kv_role("kv_both")


@dataclass(frozen=True)
class WorkerOptions:
    """The worker's transfer knobs (``kv_connector_extra_config``; see `connector_worker`)."""

    min_key_bytes: int = 256 << 10  #: pack layers into one pool object until it holds this much per block
    save_queue_bytes: int = 256 << 20  #: host bytes of saves in flight; a step beyond is dropped
    stats_path: str | None = None  #: write the worker's counters here as JSON (diagnostics, tests)


def worker_options_from_extra(extra: dict[str, Any]) -> WorkerOptions:
    """``min_key_bytes``, ``save_queue_bytes`` (bytes or a quantity like "256Ki") and
    ``stats_path`` from ``kv_connector_extra_config``; ValueError names the bad one."""
    values: dict[str, Any] = {}
    for name, minimum in (("min_key_bytes", 0), ("save_queue_bytes", 1)):
        if name not in extra:
            continue
        try:
            values[name] = parse_quantity(extra[name])
        except ValueError as err:
            raise ValueError(f"kv_connector_extra_config.{name}: {err}") from None
        if values[name] < minimum:
            raise ValueError(f"kv_connector_extra_config.{name}: must be >= {minimum}, got {extra[name]!r}")
    if extra.get("stats_path") is not None:
        values["stats_path"] = str(extra["stats_path"])
    return WorkerOptions(**values)


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

    def __init__(self, pool: PrefixIndex, block_size: int, salt: str, role: ConnectorRole = KV_BOTH) -> None:
        self.pool = pool
        self.block_size = block_size
        self.salt = salt
        self.role = role
        self._keys: dict[str, list[int]] = {}
        self._local_tokens: dict[str, int] = {}
        self._pool_blocks: dict[str, int] = {}  # hand-off only: leading full prompt blocks the pool held
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
        n_prompt = len(request.prompt_token_ids or [])
        loadable = max(0, (n_prompt - 1) // self.block_size)
        first = num_computed_tokens // self.block_size
        self._local_tokens[request.request_id] = num_computed_tokens
        if self.role.hands_off:
            # Probe every full block, even those the local cache covers: a block cached here but
            # evicted from the pool must be saved again, or the decode pod will miss it.
            held = self.pool.lookup_prefix(keys[: n_prompt // self.block_size])
            self._pool_blocks[request.request_id] = held
            return max(0, min(held, loadable) * self.block_size - num_computed_tokens), False
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
        if not self.role.saves:  # a decode pod: loads only, nothing to track
            return meta
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            prompt = list(new.prompt_token_ids or [])
            keys = self._keys.get(new.req_id) or block_hashes(prompt, self.block_size, self._salt_of(new))
            already = new.num_computed_tokens // self.block_size
            # Blocks computed earlier (local cache or loaded) are taken to be in the pool. A prefill
            # pod knows: it saves from the first block the pool lacks, local ones included (from
            # the paged cache), and skips a last full block the pool holds but it could not load.
            start = self._pool_blocks.get(new.req_id, already) if self.role.hands_off else already
            started = _Tracked(keys, len(prompt), list(new.block_ids[0]), min(start, len(keys)), already > 0)
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
        for table in (self._keys, self._local_tokens, self._tracked, self._pool_blocks):
            table.pop(request.request_id, None)
        return False, None
