"""Flow control's metrics, in the gateway's registry (names in docs/gateway.md).

- ``aibrix_gateway_flow_queue_depth{model, priority}``: requests held now, per band.
- ``aibrix_gateway_flow_held_requests{model}``: requests held now (all bands); the scaler and
  KEDA read it as demand that has no engine yet.
- ``aibrix_gateway_flow_inflight_requests{model}``: requests this gateway has sent to engines
  and not seen finish; with the held ones, the model's whole demand.
- ``aibrix_gateway_flow_wait_seconds{model, priority}``: time held before dispatch.
- ``aibrix_gateway_flow_shed_total{model, priority, reason}``: refusals (queue_full, evicted,
  queue_timeout, cold_start_timeout) and ``client_gone`` (left while held).
- ``aibrix_gateway_flow_cold_start_holds_total{model}`` and
  ``aibrix_gateway_flow_cold_start_hold_seconds{model}``: requests that arrived when the model
  had no ready engine, and how long they waited for the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["FlowMetrics"]

_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _Snapshot(Collector):
    """Gauges read at scrape time from the controller, so they are never stale."""

    def __init__(self, read: Callable[[], tuple[dict[str, dict[int, int]], dict[str, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depths, inflight = self._read()
        depth = GaugeMetricFamily("aibrix_gateway_flow_queue_depth", "Requests held per model and priority band.",
                                  labels=["model", "priority"])
        held = GaugeMetricFamily("aibrix_gateway_flow_held_requests", "Requests held per model.", labels=["model"])
        sent = GaugeMetricFamily("aibrix_gateway_flow_inflight_requests", "Requests in flight at engines per model.",
                                 labels=["model"])
        for model in sorted(depths):
            for priority, count in sorted(depths[model].items()):
                depth.add_metric([model, str(priority)], count)
            held.add_metric([model], sum(depths[model].values()))
        for model in sorted(inflight):
            sent.add_metric([model], inflight[model])
        yield depth
        yield held
        yield sent


class FlowMetrics:
    def __init__(self, registry: CollectorRegistry,
                 read: Callable[[], tuple[dict[str, dict[int, int]], dict[str, int]]]) -> None:
        self.wait_seconds = Histogram("aibrix_gateway_flow_wait_seconds", "Time held before dispatch.",
                                      ["model", "priority"], buckets=_WAIT_BUCKETS, registry=registry)
        self.shed = Counter("aibrix_gateway_flow_shed", "Held requests refused or abandoned, by reason.",
                            ["model", "priority", "reason"], registry=registry)
        self.cold_start_holds = Counter("aibrix_gateway_flow_cold_start_holds",
                                        "Requests held because the model had no ready engine.", ["model"],
                                        registry=registry)
        self.cold_start_seconds = Histogram("aibrix_gateway_flow_cold_start_hold_seconds",
                                            "How long cold-start holds waited for the first engine.", ["model"],
                                            buckets=_WAIT_BUCKETS, registry=registry)
        registry.register(_Snapshot(read))
