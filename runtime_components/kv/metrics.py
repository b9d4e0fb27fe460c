"""Prometheus metrics of one pool member, read from the store's counters at scrape time.

A custom collector (not global metric objects) so several servers can live in one process
(tests, benchmarks) each with its own registry, and the hot path only bumps plain ints.

| metric | type | meaning |
|---|---|---|
| aibrix_kv_hits_total / aibrix_kv_misses_total | counter | block reads (GET, SHM_GET) that found / missed the block |
| aibrix_kv_evictions_total | counter | blocks evicted by the policy |
| aibrix_kv_puts_total{status} | counter | block writes by outcome (stored, present, checksum mismatch, no space, too large) |
| aibrix_kv_checksum_errors_total | counter | blocks refused because their CRC did not match |
| aibrix_kv_read_bytes_total / aibrix_kv_written_bytes_total | counter | block bytes served / stored |
| aibrix_kv_requests_total{op} / aibrix_kv_errors_total{code} | counter | protocol requests / error frames sent |
| aibrix_kv_used_bytes, aibrix_kv_capacity_bytes, aibrix_kv_blocks, aibrix_kv_connections | gauge | occupancy |
| aibrix_kv_frame_timeouts_total | counter | connections closed because a frame did not arrive in time |
| aibrix_kv_receive_reserved_bytes | gauge | receive budget reserved by connections |
| aibrix_kv_receive_waiting_connections | gauge | connections waiting for receive budget |
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime_components.kv.budget import ReceiveBudget
from runtime_components.kv.protocol import Op
from runtime_components.kv.store import BlockStore, PutStatus

__all__ = ["ServerCounters", "StoreCollector"]


class ServerCounters:
    """Protocol-level counters the connection handlers bump."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        self.errors: Counter[int] = Counter()
        self.frame_timeouts = 0


class StoreCollector(Collector):
    """Turns a store's and a server's counters into metric families on each scrape."""

    def __init__(self, store: BlockStore, server: ServerCounters, connections: Callable[[], int],
                 budget: ReceiveBudget | None = None) -> None:
        self._budget = budget or ReceiveBudget(0)
        self._store = store
        self._server = server
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        stats = self._store.index.stats
        counters = self._store.counters
        for name, doc, value in (
            ("aibrix_kv_hits", "Block reads that found the block.", stats.hits),
            ("aibrix_kv_misses", "Block reads that missed.", stats.misses),
            ("aibrix_kv_evictions", "Blocks evicted by the eviction policy.", stats.evictions),
            ("aibrix_kv_checksum_errors", "Blocks refused because their CRC-32 did not match.", counters.checksum_errors),
            ("aibrix_kv_read_bytes", "Block bytes served.", counters.bytes_read),
            ("aibrix_kv_written_bytes", "Block bytes stored.", counters.bytes_written),
            ("aibrix_kv_frame_timeouts", "Connections closed because a frame did not arrive in time.",
             self._server.frame_timeouts),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        puts = CounterMetricFamily("aibrix_kv_puts", "Block writes by outcome.", labels=["status"])
        for code, name in PutStatus.NAMES.items():
            puts.add_metric([name.replace(" ", "_")], counters.puts[code])
        yield puts
        requests = CounterMetricFamily("aibrix_kv_requests", "Protocol requests by operation.", labels=["op"])
        for op, name in Op.NAMES.items():
            requests.add_metric([name], self._server.requests[op])
        yield requests
        errors = CounterMetricFamily("aibrix_kv_errors", "Error frames sent, by error code.", labels=["code"])
        for code, count in sorted(self._server.errors.items()):
            errors.add_metric([str(code)], count)
        yield errors
        for name, doc, value in (
            ("aibrix_kv_used_bytes", "Bytes of pages holding blocks (incl. in-flight writes).",
             self._store.pages_in_use() * self._store.heap.page_bytes),
            ("aibrix_kv_capacity_bytes", "Bytes of block memory.", self._store.heap.size),
            ("aibrix_kv_blocks", "Blocks held.", len(self._store.blocks)),
            ("aibrix_kv_connections", "Open client connections.", self._connections()),
            ("aibrix_kv_receive_reserved_bytes", "Receive-buffer bytes reserved by connections.", self._budget.used),
            ("aibrix_kv_receive_waiting_connections", "Connections waiting for receive budget.", self._budget.waiting),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
