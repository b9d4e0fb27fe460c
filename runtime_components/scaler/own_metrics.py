"""The scaler's own Prometheus metrics (one registry per controller, never the global one).

    aibrix_scaler_desired_replicas{target}          last decision
    aibrix_scaler_current_replicas{target}          spec.replicas read from the scale subresource
    aibrix_scaler_ready_replicas{target}            pods ready (engine source) or status.replicas
    aibrix_scaler_metric_total{target}              newest scraped total of the scaling metric
    aibrix_scaler_decisions_total{target, reason}   decisions, by the reason the policy gave
    aibrix_scaler_scale_writes_total{target, result} scale patches: ok | error
    aibrix_scaler_scrape_errors_total{target}       pods or endpoints that failed a scrape
    aibrix_scaler_leader                             1 while this replica holds the Lease
    aibrix_scaler_demand_requests{target}           gateway demand (held + in flight), with a demand source
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ScalerMetrics"]


class ScalerMetrics:
    """Holds the metric objects; `registry` is what `/metrics` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.desired = Gauge("aibrix_scaler_desired_replicas", "Replicas the scaler decided on.", ["target"], registry=r)
        self.current = Gauge("aibrix_scaler_current_replicas", "spec.replicas of the workload.", ["target"], registry=r)
        self.ready = Gauge("aibrix_scaler_ready_replicas", "Ready replicas seen by the scaler.", ["target"], registry=r)
        self.metric_total = Gauge(
            "aibrix_scaler_metric_total", "Newest total of the scaling metric.", ["target"], registry=r
        )
        self.decisions = Counter(
            "aibrix_scaler_decisions", "Scaling decisions by reason.", ["target", "reason"], registry=r
        )
        self.scale_writes = Counter(
            "aibrix_scaler_scale_writes", "Writes of the scale subresource.", ["target", "result"], registry=r
        )
        self.scrape_errors = Counter(
            "aibrix_scaler_scrape_errors", "Failed metric reads (per pod or endpoint).", ["target"], registry=r
        )
        self.demand = Gauge("aibrix_scaler_demand_requests", "Requests held plus in flight at the gateways.",
                            ["target"], registry=r)
        self.leader = Gauge("aibrix_scaler_leader", "1 while this replica is the active scaler.", registry=r)
