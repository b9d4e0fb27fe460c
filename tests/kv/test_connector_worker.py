"""The connector's worker half with a gated in-memory pool: what overlaps with the forward pass.

The pool fake lets a test hold a get or a put on the wire (a `threading.Event` gate) and
see what the forward thread does meanwhile: nothing here depends on timing. Layout of the
numpy "paged cache": (num_blocks, 8) float32 per layer, so one block of one layer is 32 bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from runtime_components.kv.connector_logic import (
    LoadSpec,
    PoolConnectorMetadata,
    SaveSpec,
    part_key,
    worker_options_from_extra,
)
from runtime_components.kv.connector_worker import PoolConnectorWorker, layer_groups

np = pytest.importorskip("numpy")

LAYERS = ["l0", "l1", "l2"]
NUM_BLOCKS = 8
WAIT = 10  # seconds a test waits for a thread it released; never reached when the code is right


class GatedPool:
    """Blocks in a dict; ``hold_get(key)`` / ``hold_puts()`` keep those calls waiting until released."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}
        self.put_order: list[list[int]] = []
        self.get_gates: dict[int, threading.Event] = {}
        self.put_gate: threading.Event | None = None
        self.puts_started = threading.Semaphore(0)

    def hold_get(self, first_key: int) -> threading.Event:
        self.get_gates[first_key] = threading.Event()
        return self.get_gates[first_key]

    def hold_puts(self) -> threading.Event:
        self.put_gate = threading.Event()
        return self.put_gate

    def get(self, keys: Sequence[int]) -> list[memoryview | None]:
        gate = self.get_gates.get(keys[0])
        if gate is not None:
            assert gate.wait(WAIT)
        return [memoryview(self.blocks[k]) if k in self.blocks else None for k in keys]

    def put(self, blocks, *, warm: bool = False) -> list[int | None]:
        self.puts_started.release()
        if self.put_gate is not None:
            assert self.put_gate.wait(WAIT)
        self.put_order.append([k for k, _ in blocks])
        for key, blob in blocks:
            self.blocks[key] = bytes(blob)
        return [0] * len(blocks)


class RowOps:
    """TensorOps for (num_blocks, width) arrays: block i is row i."""

    def block_dim(self, layer, num_blocks):
        return 0

    def block_bytes(self, layer, block_dim):
        return layer.shape[1] * layer.itemsize

    def extract(self, layer, block_dim, block_ids):
        rows = np.ascontiguousarray(layer[list(block_ids)]).view(np.uint8)
        return [memoryview(rows[i]) for i in range(len(block_ids))]

    def inject(self, layer, block_dim, block_ids, blobs):
        layer[list(block_ids)] = np.frombuffer(b"".join(blobs), dtype=layer.dtype).reshape(len(block_ids), -1)


def make_worker(pool: GatedPool, seed: int, **options) -> tuple[PoolConnectorWorker, dict]:
    worker = PoolConnectorWorker(pool, RowOps(), rank=0, num_blocks=NUM_BLOCKS, **options)
    rng = np.random.default_rng(seed)
    kv = {name: rng.standard_normal((NUM_BLOCKS, 8)).astype(np.float32) for name in LAYERS}
    worker.register_kv_caches(kv)
    return worker, kv


def save_step(worker: PoolConnectorWorker, kv: dict, meta: PoolConnectorMetadata) -> None:
    worker.start_load_kv(meta)
    for name in LAYERS:
        worker.wait_for_layer_load(name)
        worker.save_kv_layer(name, kv[name], meta)
    worker.wait_for_save(meta)


def test_layers_pack_into_groups_of_at_least_min_key_bytes():
    sizes = {"a": 64, "b": 64, "c": 64, "d": 64, "e": 64}
    assert layer_groups(sizes, 0) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert layer_groups(sizes, 128) == [["a", "b"], ["c", "d", "e"]]  # the short tail joins the last group
    assert layer_groups(sizes, 10**9) == [["a", "b", "c", "d", "e"]]


def test_the_forward_pass_returns_while_its_saves_are_still_on_the_wire():
    pool = GatedPool()
    worker, kv = make_worker(pool, 1, min_key_bytes=0)
    release = pool.hold_puts()
    meta = PoolConnectorMetadata(saves=[SaveSpec("r", [2, 5], [111, 222])])
    save_step(worker, kv, meta)  # returns although no put has finished
    assert pool.puts_started.acquire(timeout=WAIT)  # the sender thread is inside put, held
    assert pool.blocks == {} and worker.stats["saves_pending_at_step_end"] >= 1
    release.set()
    assert worker.flush_saves(WAIT)
    # Groups 1 and 2 first; group 0 (the key the scheduler probes) last.
    assert pool.put_order == [[part_key(k, g, 0) for k in (111, 222)] for g in (1, 2, 0)]
    assert pool.blocks[part_key(222, 2, 0)] == kv["l2"][5].tobytes()
    assert worker.stats["saved_blocks"] == 2 and worker.stats["save_jobs_sent"] == 3
    worker.close()


def test_saves_beyond_the_queue_bound_are_dropped_not_waited_for():
    pool = GatedPool()
    worker, kv = make_worker(pool, 2, save_queue_bytes=2 * 3 * 32)  # room for 2 blocks of 3 layers
    release = pool.hold_puts()
    save_step(worker, kv, PoolConnectorMetadata(saves=[SaveSpec("a", [0, 1], [1, 2])]))
    save_step(worker, kv, PoolConnectorMetadata(saves=[SaveSpec("b", [3], [3])]))  # queue full: dropped whole
    assert worker.stats["dropped_blocks"] == 1
    release.set()
    assert worker.flush_saves(WAIT)
    assert set(pool.blocks) == {1, 2}
    save_step(worker, kv, PoolConnectorMetadata(saves=[SaveSpec("c", [3], [3])]))  # room again
    assert worker.flush_saves(WAIT) and 3 in pool.blocks
    worker.close()


def test_a_hand_off_holds_the_end_of_the_forward_pass_until_the_pool_has_every_block():
    pool = GatedPool()
    worker, kv = make_worker(pool, 11, min_key_bytes=0, hand_off=True)
    release = pool.hold_puts()
    meta = PoolConnectorMetadata(saves=[SaveSpec("r", [2, 5], [111, 222])])
    step_ended = threading.Event()
    forward = threading.Thread(target=lambda: (save_step(worker, kv, meta), step_ended.set()), daemon=True)
    forward.start()
    assert pool.puts_started.acquire(timeout=WAIT)  # a put is on the wire, held by the test
    assert not step_ended.is_set()  # ...and the step has not ended: it is waiting for the pool
    release.set()
    assert step_ended.wait(WAIT)
    forward.join(WAIT)
    # When the step ends (and vLLM may send the response), every group of every block is stored.
    assert set(pool.blocks) == {part_key(k, g, 0) for k in (111, 222) for g in range(3)}
    assert worker.stats["handoff_waits"] == 1 and worker.stats["saves_pending_at_step_end"] == 0
    worker.close()


def test_a_hand_off_is_never_dropped_for_the_queue_bound():
    pool = GatedPool()
    worker, kv = make_worker(pool, 12, save_queue_bytes=32, hand_off=True)  # less than one block of 3 layers
    save_step(worker, kv, PoolConnectorMetadata(saves=[SaveSpec("a", [0, 1], [1, 2])]))
    assert set(pool.blocks) == {1, 2} and worker.stats["dropped_blocks"] == 0
    worker.close()


def test_each_layer_waits_only_for_its_own_group():
    pool = GatedPool()
    source, kv_a = make_worker(pool, 3, min_key_bytes=0)
    save_step(source, kv_a, PoolConnectorMetadata(saves=[SaveSpec("r", [0, 1], [7, 8])]))
    assert source.flush_saves(WAIT)
    worker, kv_b = make_worker(pool, 4, min_key_bytes=0)
    release = pool.hold_get(part_key(7, 2, 0))  # the last layer's objects stay on the wire
    meta = PoolConnectorMetadata(loads=[LoadSpec("r", [4, 6], [7, 8])])
    worker.start_load_kv(meta)
    worker.wait_for_layer_load("l0")
    worker.wait_for_layer_load("l1")  # layers 0 and 1 are usable while layer 2 is still loading
    assert np.array_equal(kv_b["l1"][[4, 6]], kv_a["l1"][[0, 1]])
    assert not np.array_equal(kv_b["l2"][[4, 6]], kv_a["l2"][[0, 1]])
    release.set()
    worker.wait_for_layer_load("l2")
    worker.wait_for_save(meta)
    assert np.array_equal(kv_b["l2"][[4, 6]], kv_a["l2"][[0, 1]])
    assert (worker.stats["layer_waits"], worker.stats["late_groups"], worker.stats["loaded_blocks"]) == (3, 0, 2)
    assert worker.take_load_errors() == set()
    worker.close()
    source.close()


def test_groups_no_layer_waited_for_are_settled_at_the_end_and_counted():
    pool = GatedPool()
    source, kv_a = make_worker(pool, 5, min_key_bytes=0)
    save_step(source, kv_a, PoolConnectorMetadata(saves=[SaveSpec("r", [0], [9])]))
    assert source.flush_saves(WAIT)
    worker, kv_b = make_worker(pool, 6, min_key_bytes=0)
    meta = PoolConnectorMetadata(loads=[LoadSpec("r", [3], [9])])
    worker.start_load_kv(meta)
    worker.wait_for_save(meta)  # no layer hook ran
    assert worker.stats["late_groups"] == 3
    assert all(np.array_equal(kv_b[name][3], kv_a[name][0]) for name in LAYERS)
    worker.close()
    source.close()


def test_a_save_whose_layers_did_not_all_run_publishes_nothing_visible():
    pool = GatedPool()
    worker, kv = make_worker(pool, 7, min_key_bytes=0)
    meta = PoolConnectorMetadata(saves=[SaveSpec("r", [1], [5])])
    worker.save_kv_layer("l0", kv["l0"], meta)
    worker.save_kv_layer("l1", kv["l1"], meta)
    worker.wait_for_save(meta)  # l2's hook never ran
    assert worker.flush_saves(WAIT)
    assert 5 not in pool.blocks and worker.stats["dropped_blocks"] == 1
    save_step(worker, kv, meta)  # the reservation was released: the next step is not dropped
    assert worker.flush_saves(WAIT) and 5 in pool.blocks
    worker.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"min_key_bytes": "lots"}, "kv_connector_extra_config.min_key_bytes: expected a byte count or a quantity"),
        ({"save_queue_bytes": 0}, "kv_connector_extra_config.save_queue_bytes: must be >= 1, got 0"),
    ],
)
def test_bad_worker_options_name_the_field(extra, message):
    with pytest.raises(ValueError, match=message):
        worker_options_from_extra(extra)


def test_worker_options_accept_quantities():
    options = worker_options_from_extra({"min_key_bytes": "64Ki", "save_queue_bytes": "1Gi", "stats_path": "/tmp/s"})
    assert (options.min_key_bytes, options.save_queue_bytes, options.stats_path) == (64 << 10, 1 << 30, "/tmp/s")
