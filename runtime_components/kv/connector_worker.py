"""The worker half of the vLLM connector: layer-wise loads and background saves, without vLLM.

vLLM calls, per step and on the forward thread: ``start_load_kv`` before the forward pass,
then for each attention layer ``wait_for_layer_load(layer)`` on entry and
``save_kv_layer(layer)`` on exit, and ``wait_for_save`` after the last layer. The network
must stay off that thread as far as the API allows:

- **Layout.** A block is stored as one pool object per *layer group* (consecutive layers in
  registration order, packed until a group holds at least ``min_key_bytes`` per block: a
  64 KiB object moves at about half the GB/s of a 256 KiB one, see `benchmarks/kv.py`).
  Group 0 is stored under the block's prefix key, the key the scheduler probes; group g > 0
  under ``part_key(key, g)``. Group 0 is written last, so a block the scheduler sees has had
  every group sent (a group lost since, to eviction or a dropped save, is a load error).
- **Load.** ``start_load_kv`` queues one batched get per group, in layer order, on a loader
  thread, and returns. ``wait_for_layer_load`` blocks only until *its* group has arrived,
  then copies that group's layers into the paged cache on the forward thread (the only
  thread that touches the KV tensors): group g+1 is on the wire while layer g computes.
  ``wait_for_save`` (end of the forward pass) settles the step: a block whose group is
  missing or of the wrong size, and every block after it in its request, is reported by
  ``take_load_errors`` so vLLM recomputes them.
- **Save.** ``save_kv_layer`` copies the layer's blocks to host memory (so vLLM may reuse
  the paged blocks at once: the scheduler frees them without waiting) and, when a group's
  last layer is in, hands the group to a sender thread. ``wait_for_save`` hands over group 0
  and returns without waiting for the network. The bytes in flight are bounded by
  ``save_queue_bytes``: a step that would exceed it is dropped whole (the pool is a cache: a
  dropped save is a future miss; stalling the forward pass is worse). ``flush_saves`` waits
  for the sender (shutdown, tests).
- **Hand-off** (``hand_off=True``, vLLM's ``kv_producer``: a prefill pod). The saves are the
  point, so ``wait_for_save`` *does* wait until every save of the step has been answered by
  the pool, and a step is never dropped for the queue bound (nothing outlives its step, so
  at most one step is in flight). vLLM calls ``wait_for_save`` inside ``execute_model``,
  before the step's sampled tokens go back to the scheduler, so the prefill's one-token
  response cannot leave before its blocks are in the pool. (Returning True from
  ``request_finished`` and reporting the request in ``get_finished`` would only delay freeing
  the blocks; vLLM sends the response without waiting for it.) Each put is bounded by the
  pool client's ``timeout_ms``; a failed put is a miss on the decode pod, which recomputes.

``stats`` counts what happened, so a test can check the overlap: ``layer_waits`` (groups a
``wait_for_layer_load`` settled), ``late_groups`` (groups no layer waited for, settled at
``wait_for_save``: 0 when vLLM calls the layer hooks), ``waits_blocked`` (waits that found
their group still on the wire), ``save_jobs_queued`` / ``save_jobs_sent``, and
``saves_pending_at_step_end`` (saves still on the wire when ``wait_for_save`` returned: the
forward pass did not wait for them), and with hand-off ``handoff_waits`` (step ends that
found saves still on the wire and waited for them).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime_components.kv.connector_logic import LoadSpec, PoolConnectorMetadata, SaveSpec, part_key

__all__ = ["BlockPoolClient", "PoolConnectorWorker", "TensorOps", "layer_groups"]


class BlockPoolClient(Protocol):
    """The blocking pool client, as the worker uses it (from its own threads)."""

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


def layer_groups(layer_bytes: dict[str, int], min_key_bytes: int) -> list[list[str]]:
    """Consecutive layers packed until each group holds ``min_key_bytes`` per block; a short
    tail joins the last group. ``min_key_bytes=0``: one group per layer.

    >>> layer_groups({"a": 64, "b": 64, "c": 64, "d": 64, "e": 64}, 128)
    [['a', 'b'], ['c', 'd', 'e']]
    """
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for name, n in layer_bytes.items():
        current.append(name)
        size += n
        if size >= min_key_bytes:
            groups.append(current)
            current, size = [], 0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


@dataclass
class _LoadStep:
    """This step's loads: one fetch per group, settled group by group."""

    loads: list[LoadSpec]
    keys: list[int]  # every load's keys, flattened in order
    block_ids: list[int]
    fetches: list[Future[list[memoryview | None]]]
    usable: list[int]  # per load: leading blocks every settled group delivered
    settled: set[int] = field(default_factory=set)


@dataclass
class _SaveStep:
    """This step's saves: blocks flattened, layer copies collected until a group is complete."""

    block_ids: list[int]
    keys: list[int]
    warm: list[bool]
    dropped: bool
    reserved: int  # bytes counted against save_queue_bytes for this step
    queued: int = 0  # of which handed to the sender so far
    layers: dict[int, dict[str, list[memoryview]]] = field(default_factory=dict)  # group -> layer -> blocks
    group0: list[tuple[bool, list[tuple[int, bytes]]]] | None = None
    complete: int = 0


class PoolConnectorWorker:
    """Worker-side transfers (one instance per worker process / TP rank)."""

    def __init__(
        self,
        pool: BlockPoolClient,
        ops: TensorOps,
        *,
        rank: int,
        num_blocks: int,
        block_dim: int | None = None,
        min_key_bytes: int = 256 << 10,
        save_queue_bytes: int = 256 << 20,
        stats_path: str | None = None,
        hand_off: bool = False,
    ) -> None:
        self.pool = pool
        self.hand_off = hand_off
        self.ops = ops
        self.rank = rank
        self.num_blocks = num_blocks
        self.min_key_bytes = min_key_bytes
        self.save_queue_bytes = save_queue_bytes
        self.stats_path = stats_path
        self._block_dim_override = block_dim
        self.layers: dict[str, Any] = {}
        self.block_dims: dict[str, int] = {}
        self.layer_bytes: dict[str, int] = {}
        self.groups: list[list[str]] = []
        self.group_of: dict[str, int] = {}
        self.group_bytes: list[int] = []
        self.blob_bytes = 0
        self.load_errors: set[int] = set()
        self._load: _LoadStep | None = None
        self._save: _SaveStep | None = None
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="aibrix-kv-load")
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="aibrix-kv-save")
        self._lock = threading.Lock()  # guards what the sender thread updates
        self._in_flight: list[Future[None]] = []
        self._queued_bytes = 0
        self.stats = {
            "loaded_blocks": 0, "failed_blocks": 0, "layer_waits": 0, "waits_blocked": 0, "late_groups": 0,
            "saved_blocks": 0, "dropped_blocks": 0, "save_jobs_queued": 0, "save_jobs_sent": 0,
            "saves_pending_at_step_end": 0, "handoff_waits": 0, "groups": 0,
        }

    def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
        self.layers = dict(kv_caches)
        self.block_dims = {
            name: self._block_dim_override if self._block_dim_override is not None else self.ops.block_dim(t, self.num_blocks)
            for name, t in self.layers.items()
        }
        self.layer_bytes = {name: self.ops.block_bytes(t, self.block_dims[name]) for name, t in self.layers.items()}
        self.blob_bytes = sum(self.layer_bytes.values())
        self.groups = layer_groups(self.layer_bytes, self.min_key_bytes)
        self.group_of = {name: g for g, names in enumerate(self.groups) for name in names}
        self.group_bytes = [sum(self.layer_bytes[name] for name in names) for names in self.groups]
        self.stats["groups"] = len(self.groups)

    # -- loads -------------------------------------------------------------------------------

    def start_load_kv(self, meta: PoolConnectorMetadata) -> None:
        self._load = None
        if not meta.loads or not self.groups:
            return
        keys = [k for load in meta.loads for k in load.keys]
        fetches = [self._loader.submit(self._fetch, [part_key(k, g, self.rank) for k in keys]) for g in range(len(self.groups))]
        self._load = _LoadStep(list(meta.loads), keys, [b for load in meta.loads for b in load.block_ids], fetches,
                               [len(load.keys) for load in meta.loads])

    def _fetch(self, keys: list[int]) -> list[memoryview | None]:
        try:
            return self.pool.get(keys)
        except Exception:  # the client turns pool failures into misses; anything else is one too
            return [None] * len(keys)

    def wait_for_layer_load(self, layer_name: str) -> None:
        step = self._load
        group = self.group_of.get(layer_name)
        if step is None or group is None or group in step.settled:
            return
        self.stats["layer_waits"] += 1
        self._settle(step, group)

    def _settle(self, step: _LoadStep, group: int) -> None:
        """Copy ``group``'s layers of every usable block into the paged cache (forward thread)."""
        fetch = step.fetches[group]
        if not fetch.done():
            self.stats["waits_blocked"] += 1
        blobs = fetch.result()
        size = self.group_bytes[group]
        start = 0
        for i, load in enumerate(step.loads):
            n = 0  # a blob of the wrong size (other model, other layout) counts as missing
            while n < len(load.keys) and (blob := blobs[start + n]) is not None and len(blob) == size:
                n += 1
            step.usable[i] = min(step.usable[i], n)
            if n:
                offset = 0
                for name in self.groups[group]:
                    width = self.layer_bytes[name]
                    parts = [blob[offset : offset + width] for blob in blobs[start : start + n] if blob is not None]
                    self.ops.inject(self.layers[name], self.block_dims[name], load.block_ids[:n], parts)
                    offset += width
            start += len(load.keys)
        step.settled.add(group)

    def _finish_loads(self) -> None:
        step, self._load = self._load, None
        if step is None:
            return
        for group in range(len(self.groups)):
            if group not in step.settled:  # no layer hook waited for it: settle now (too late for this pass)
                self.stats["late_groups"] += 1
                self._settle(step, group)
        for load, usable in zip(step.loads, step.usable):
            if usable < len(load.keys):  # a hole: this block and every later one must be recomputed
                self.load_errors.update(load.block_ids[usable:])
                self.stats["failed_blocks"] += len(load.keys) - usable
            self.stats["loaded_blocks"] += usable

    def take_load_errors(self) -> set[int]:
        errors, self.load_errors = self.load_errors, set()
        return errors

    # -- saves -------------------------------------------------------------------------------

    def save_kv_layer(self, layer_name: str, kv_layer: Any, meta: PoolConnectorMetadata) -> None:
        if not meta.saves or layer_name not in self.group_of:
            return
        step = self._save
        if step is None:
            step = self._save = self._begin_save(meta.saves)
        if step.dropped:
            return
        group = self.group_of[layer_name]
        copies = self.ops.extract(kv_layer, self.block_dims[layer_name], step.block_ids)
        collected = step.layers.setdefault(group, {})
        collected[layer_name] = copies
        if len(collected) < len(self.groups[group]):
            return
        jobs = self._group_jobs(step, group)
        del step.layers[group]
        step.complete += 1
        if group == 0:
            step.group0 = jobs  # written last: its key is what the scheduler probes
        else:
            for warm, blocks in jobs:
                self._queue(step, blocks, warm)
        if step.complete == len(self.groups) and step.group0 is not None:
            for warm, blocks in step.group0:
                self._queue(step, blocks, warm, finishes=len(blocks))
            step.group0 = None

    def _begin_save(self, saves: Sequence[SaveSpec]) -> _SaveStep:
        block_ids = [b for save in saves for b in save.block_ids]
        keys = [k for save in saves for k in save.keys]
        warm = [save.warm for save in saves for _ in save.keys]
        need = len(keys) * self.blob_bytes
        with self._lock:
            # A hand-off never drops: its steps are waited for, so the queue holds one step at most.
            dropped = not self.hand_off and self._queued_bytes + need > self.save_queue_bytes
            if not dropped:
                self._queued_bytes += need  # reserved now, released as the sender finishes each group
        if dropped:
            self.stats["dropped_blocks"] += len(keys)
        return _SaveStep(block_ids, keys, warm, dropped, 0 if dropped else need)

    def _group_jobs(self, step: _SaveStep, group: int) -> list[tuple[bool, list[tuple[int, bytes]]]]:
        collected = step.layers[group]
        by_warmth: dict[bool, list[tuple[int, bytes]]] = {False: [], True: []}
        for i, key in enumerate(step.keys):
            blob = b"".join(collected[name][i] for name in self.groups[group])
            by_warmth[step.warm[i]].append((part_key(key, group, self.rank), blob))
        return [(warm, blocks) for warm, blocks in by_warmth.items() if blocks]

    def _queue(self, step: _SaveStep, blocks: list[tuple[int, bytes]], warm: bool, finishes: int = 0) -> None:
        self.stats["save_jobs_queued"] += 1
        step.queued += sum(len(blob) for _, blob in blocks)
        future = self._sender.submit(self._send, blocks, warm, finishes)
        with self._lock:
            self._in_flight = [f for f in self._in_flight if not f.done()] + [future]

    def _send(self, blocks: list[tuple[int, bytes]], warm: bool, finishes: int) -> None:
        try:
            self.pool.put(blocks, warm=warm)
        except Exception:  # the client drops puts to dead members; nothing may reach vLLM from here
            pass
        finally:
            with self._lock:
                self._queued_bytes -= sum(len(blob) for _, blob in blocks)
                self.stats["save_jobs_sent"] += 1
                self.stats["saved_blocks"] += finishes
            self._publish_stats()

    def wait_for_save(self, meta: PoolConnectorMetadata) -> None:
        """End of the forward pass: settle loads, release what an incomplete save reserved.
        Waits for the network only with hand-off (then for every save queued so far)."""
        self._finish_loads()
        step, self._save = self._save, None
        if step is not None and not step.dropped and step.queued < step.reserved:
            # A layer's save hook never ran: group 0 (the visible key) stays unsent, so nothing
            # partial is published; the groups already sent are unreachable and age out.
            with self._lock:
                self._queued_bytes -= step.reserved - step.queued
            self.stats["dropped_blocks"] += len(step.keys)
        with self._lock:
            pending = sum(not f.done() for f in self._in_flight)
        if pending and self.hand_off:
            self.stats["handoff_waits"] += 1
            self.flush_saves()  # bounded by the client's timeout_ms per put
            pending = 0
        self.stats["saves_pending_at_step_end"] += pending
        self._publish_stats()

    def flush_saves(self, timeout_s: float | None = None) -> bool:
        """Wait for every queued save to be sent; False if ``timeout_s`` passed first."""
        with self._lock:
            pending = list(self._in_flight)
        done, not_done = wait_futures(pending, timeout=timeout_s)
        return not not_done

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush_saves(timeout_s)
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._sender.shutdown(wait=False, cancel_futures=True)

    def _publish_stats(self) -> None:
        if not self.stats_path:
            return
        with self._lock:
            text = json.dumps(self.stats, sort_keys=True)
        tmp = f"{self.stats_path}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, self.stats_path)
