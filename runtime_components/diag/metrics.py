"""Prometheus metrics of the periodic mode, rendered from the latest report.

A custom collector yields the last pass as it was, so a GPU that disappears also disappears
from /metrics (no stale series):

- ``aibrix_diag_check_status{check, gpu, uuid}``: 0 ok, 1 warn, 2 fail (gpu="node" for node checks);
- ``aibrix_diag_check_value{check, gpu, uuid, name}``: the numbers each check read (temperature,
  ECC counts, link width, watts, ...);
- ``aibrix_diag_node_status``: worst status, 0/1/2, or 3 when NVML is unavailable;
- ``aibrix_diag_nvml_available``: 1 when NVML loaded;
- ``aibrix_diag_pass_duration_seconds``, ``aibrix_diag_last_pass_timestamp_seconds``,
  ``aibrix_diag_passes_total``, ``aibrix_diag_node_update_errors_total`` (failed Kubernetes calls).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime_components.diag.report import Report

__all__ = ["DiagCollector", "MetricsServer"]

_NODE_STATUS = {"ok": 0, "warn": 1, "fail": 2, "no-nvml": 3}


class DiagCollector(Collector):
    """Holds the latest report (swapped atomically) and renders it on scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: Report | None = None
        self._finished_at = 0.0
        self._passes = 0
        self._node_update_errors = 0

    def update(self, report: Report, *, finished_at: float, node_update_errors: int = 0) -> None:
        with self._lock:
            self._report = report
            self._finished_at = finished_at
            self._passes += 1
            self._node_update_errors = node_update_errors

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            report, finished_at, passes, errors = (
                self._report,
                self._finished_at,
                self._passes,
                self._node_update_errors,
            )
        passes_total = CounterMetricFamily("aibrix_diag_passes", "Diagnostic passes completed.")
        passes_total.add_metric([], passes)
        yield passes_total
        node_errors = CounterMetricFamily("aibrix_diag_node_update_errors", "Failed Kubernetes node updates.")
        node_errors.add_metric([], errors)
        yield node_errors
        if report is None:
            return
        uuids = {g.index: g.uuid for g in report.gpus}
        status = GaugeMetricFamily(
            "aibrix_diag_check_status", "Check status: 0 ok, 1 warn, 2 fail.", labels=["check", "gpu", "uuid"]
        )
        value = GaugeMetricFamily(
            "aibrix_diag_check_value", "A reading a check made.", labels=["check", "gpu", "uuid", "name"]
        )
        for result in report.results:
            gpu = "node" if result.gpu is None else str(result.gpu)
            uuid = uuids.get(result.gpu, "") if result.gpu is not None else ""
            status.add_metric([result.check, gpu, uuid], int(result.status))
            for name, number in sorted(result.values.items()):
                value.add_metric([result.check, gpu, uuid, name], number)
        yield status
        yield value
        yield _gauge(
            "aibrix_diag_node_status",
            "Worst status: 0 ok, 1 warn, 2 fail, 3 NVML unavailable.",
            _NODE_STATUS[report.status],
        )
        yield _gauge("aibrix_diag_nvml_available", "1 when NVML loaded.", int(report.nvml_available))
        yield _gauge("aibrix_diag_pass_duration_seconds", "Duration of the last pass.", report.duration_ms / 1000)
        yield _gauge("aibrix_diag_last_pass_timestamp_seconds", "Unix time the last pass finished.", finished_at)


def _gauge(name: str, documentation: str, number: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], number)
    return gauge


class MetricsServer:
    """/metrics over HTTP on its own registry; `port` 0 binds a free port (see `.port`)."""

    def __init__(self, collector: DiagCollector, *, address: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self._server: Any
        self._server, self._thread = start_http_server(port, addr=address, registry=self.registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
