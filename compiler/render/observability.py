"""Renderer family "observability": Prometheus Operator objects for what the stack deploys.

Only when ``spec.observability`` is on (absent = off: the ``monitoring.coreos.com`` CRDs may
not exist in the cluster, and applying an object of an unknown kind fails the whole sync).

``amend`` reads the other families' output, so every component is covered without a list to
keep in sync; the convention it relies on:

- an engine Service (component ``engine`` with ``model.aibrix.ai/name``) is scraped on its
  ``http`` port at ``/metrics`` (vLLM serves both there; a multi-node model's Service selects
  only Ray heads, which serve them);
- the gateway and the optimizer serve ``/metrics`` beside their API, on the ``http`` port
  (the plan's ``ObservabilityPlan.http_metrics``, by their ``app.kubernetes.io/name``);
- any other Service with a port named ``metrics`` is scraped on that port at ``/metrics``;
- a workload (Deployment, StatefulSet, DaemonSet) with a container port named ``metrics`` that
  no such Service selects (the autoscaler) gets a PodMonitor instead.

Each monitor (``serviceMonitors: true``) is named after its Service or workload, selects it by
the labels it will carry (its own plus component and instance), scrapes every
``scrapeInterval`` and copies the pod's node into a ``node`` label (GPU checks are per node);
an engine monitor also copies the pod's ``aibrix.ai/gpu-pool`` into ``pool`` (dashboards count
engine pods and their cost per pool).

``prometheusRules: true`` adds one PrometheusRule ``aibrix-alerts`` with, per model:
in the metric names of the model's engine (vLLM or SGLang, through
:mod:`aibrix_spec.engine_metrics`), TTFT and TPOT p99 over 5 minutes above
``slo.ttftP99Ms``/``slo.tpotP99Ms`` (when set), KV cache above 95% while requests wait, and
no scrapable engine (when ServiceMonitors exist); and, with diagnostics, a failing GPU check
(status 2), a warning that lasts 30 minutes, and NVML missing.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec.engine_metrics import translate_name

from ..manifest import Manifest
from ..plan import ModelPlan, ObservabilityPlan, Plan
from ..plan.names import ENGINE, ROLE_LABEL

__all__ = ["COMPONENT", "amend", "pod_monitor", "render", "service_monitor"]

COMPONENT = "observability"
_API = "monitoring.coreos.com/v1"
_KV_FULL = 0.95
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
_NODE_LABEL = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}
#: Engine series carry their pod's GPU pool (dashboards count engine pods and cost per pool).
_POOL_LABEL = {"sourceLabels": ["__meta_kubernetes_pod_label_aibrix_ai_gpu_pool"], "targetLabel": "pool",
               "action": "replace"}
#: A disaggregated model's engine series carry their pod's role (dashboards count each role's GPUs).
_ROLE_LABEL = {"sourceLabels": ["__meta_kubernetes_pod_label_model_aibrix_ai_role"], "targetLabel": "role",
               "action": "replace"}


def render(plan: Plan) -> list[Manifest]:
    """Everything happens in :func:`amend`, which sees the other families' Services."""
    return []


def _scrape_port(obs: ObservabilityPlan, service: Manifest) -> str | None:
    labels = service.body["metadata"].get("labels", {})
    ports = [p.get("name") for p in service.body.get("spec", {}).get("ports", [])]
    if service.component == ENGINE and "model.aibrix.ai/name" in labels and "http" in ports:
        return "http"
    if labels.get("app.kubernetes.io/name") in obs.http_metrics and "http" in ports:
        return "http"
    return "metrics" if "metrics" in ports else None


def _final_labels(plan: Plan, m: Manifest, labels: dict[str, str]) -> dict[str, str]:
    """``labels`` plus what the labels transformer adds and selectors may rely on."""
    final = {**labels, "app.kubernetes.io/component": m.component, "app.kubernetes.io/instance": plan.stack_name}
    return dict(sorted(final.items()))


def service_monitor(plan: Plan, service: Manifest, port: str, interval: str) -> Manifest:
    """A ServiceMonitor selecting exactly ``service`` (by the labels it will carry)."""
    selector = _final_labels(plan, service, service.body["metadata"].get("labels", {}))
    relabelings = [dict(_NODE_LABEL)] + ([dict(_POOL_LABEL)] if service.component == ENGINE else [])
    if service.component == ENGINE and ROLE_LABEL in service.body["metadata"].get("labels", {}):
        relabelings.append(dict(_ROLE_LABEL))
    endpoint = {"port": port, "path": "/metrics", "interval": interval, "relabelings": relabelings}
    body = {
        "apiVersion": _API,
        "kind": "ServiceMonitor",
        "metadata": {"name": service.name, "labels": dict(service.body["metadata"].get("labels", {}))},
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [plan.namespace]},
            "endpoints": [endpoint],
        },
    }
    return Manifest(service.component, body)


def _pod_labels(plan: Plan, workload: Manifest) -> dict[str, str]:
    template = workload.body["spec"]["template"]
    return _final_labels(plan, workload, template.get("metadata", {}).get("labels", {}))


def _has_metrics_port(workload: Manifest) -> bool:
    containers = workload.body["spec"]["template"]["spec"].get("containers", [])
    return any(p.get("name") == "metrics" for c in containers for p in c.get("ports", []))


def pod_monitor(plan: Plan, workload: Manifest, interval: str) -> Manifest:
    """A PodMonitor scraping a workload's ``metrics`` container port."""
    endpoint = {"port": "metrics", "path": "/metrics", "interval": interval, "relabelings": [dict(_NODE_LABEL)]}
    body = {
        "apiVersion": _API,
        "kind": "PodMonitor",
        "metadata": {"name": workload.name, "labels": dict(workload.body["metadata"].get("labels", {}))},
        "spec": {
            "selector": {"matchLabels": workload.body["spec"]["selector"]["matchLabels"]},
            "namespaceSelector": {"matchNames": [plan.namespace]},
            "podMetricsEndpoints": [endpoint],
        },
    }
    return Manifest(workload.component, body)


def _monitors(plan: Plan, obs: ObservabilityPlan, manifests: list[Manifest], interval: str) -> list[Manifest]:
    out, covered = [], []  # covered: selectors of Services that expose a metrics port
    for m in manifests:
        port = _scrape_port(obs, m) if m.kind == "Service" else None
        if port is not None:
            out.append(service_monitor(plan, m, port, interval))
            if port == "metrics":
                covered.append(m.body["spec"].get("selector", {}))
    for m in manifests:
        if m.kind in _WORKLOADS and _has_metrics_port(m):
            pods = _pod_labels(plan, m)
            if not any(sel and sel.items() <= pods.items() for sel in covered):
                out.append(pod_monitor(plan, m, interval))
    return out


def _rule(alert: str, expr: str, duration: str, severity: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary},
    }


def _quantile_above(metric: str, match: str, seconds: str) -> str:
    return f"histogram_quantile(0.99, sum by (le) (rate({metric}{{{match}}}[5m]))) > {seconds}"


def _names(model: ModelPlan, *vllm_names: str) -> list[str] | None:
    """The names the model's engine exports for these vLLM metrics (None: one it lacks)."""
    out = [next(iter(translate_name(name, model.engine)), "") for name in vllm_names]
    return out if all(out) else None


def _model_rules(plan: Plan, model: ModelPlan, *, monitored: bool) -> list[dict[str, Any]]:
    slo = model.slo
    match = f'namespace="{plan.namespace}",model_name="{model.served_name}"'
    rules: list[dict[str, Any]] = []
    ttft = _names(model, "vllm:time_to_first_token_seconds_bucket")
    if slo.ttft_p99_ms is not None and ttft is not None:
        seconds = f"{slo.ttft_p99_ms / 1000:g}"
        expr = _quantile_above(ttft[0], match, seconds)
        summary = f"{model.name}: TTFT p99 above {seconds}s"
        rules.append(_rule("AIBrixTTFTAboveSLO", expr, "10m", "warning", summary, model=model.name))
    tpot = _names(model, "vllm:request_time_per_output_token_seconds_bucket")
    if slo.tpot_p99_ms is not None and tpot is not None:
        seconds = f"{slo.tpot_p99_ms / 1000:g}"
        expr = _quantile_above(tpot[0], match, seconds)
        summary = f"{model.name}: TPOT p99 above {seconds}s"
        rules.append(_rule("AIBrixTPOTAboveSLO", expr, "10m", "warning", summary, model=model.name))
    full = _names(model, "vllm:kv_cache_usage_perc", "vllm:num_requests_waiting")
    if full is not None:
        expr = f"max({full[0]}{{{match}}}) > {_KV_FULL:g} and sum({full[1]}{{{match}}}) > 0"
        summary = f"{model.name}: KV cache full while requests wait"
        rules.append(_rule("AIBrixKVCacheFull", expr, "10m", "warning", summary, model=model.name))
    if monitored:  # `up` exists only for targets a monitor scrapes
        up = f'up{{namespace="{plan.namespace}",service="{model.name}"}}'
        summary = f"{model.name}: no engine answers /metrics"
        rules.append(_rule("AIBrixEngineDown", f"sum({up}) == 0 or absent({up})", "10m", "critical", summary, model=model.name))
    return rules


def _diag_rules(plan: Plan) -> list[dict[str, Any]]:
    ns = f'namespace="{plan.namespace}"'
    return [
        _rule(
            "AIBrixGPUCheckFailed",
            f"max by (node) (aibrix_diag_node_status{{{ns}}}) == 2",
            "2m",
            "critical",
            "a GPU check fails on {{ $labels.node }}: run aibrix-diag there for the report",
        ),
        _rule(
            "AIBrixGPUCheckWarning",
            f"max by (node) (aibrix_diag_node_status{{{ns}}}) == 1",
            "30m",
            "warning",
            "a GPU check warns on {{ $labels.node }} for 30 minutes",
        ),
        _rule(
            "AIBrixNVMLUnavailable",
            f"min by (node) (aibrix_diag_nvml_available{{{ns}}}) == 0",
            "10m",
            "warning",
            "NVML is not available on {{ $labels.node }} (driver or runtime class)",
        ),
    ]


def _prometheus_rule(plan: Plan, *, monitored: bool) -> Manifest:
    groups = [{"name": f"aibrix-{model.name}", "rules": _model_rules(plan, model, monitored=monitored)} for model in plan.models]
    if plan.diagnostics is not None:
        groups.append({"name": "aibrix-gpu-diagnostics", "rules": _diag_rules(plan)})
    body = {
        "apiVersion": _API,
        "kind": "PrometheusRule",
        "metadata": {"name": "aibrix-alerts", "labels": {"app.kubernetes.io/name": "aibrix-alerts"}},
        "spec": {"groups": groups},
    }
    return Manifest(COMPONENT, body)


def amend(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    """The input plus ServiceMonitors for scrapable Services and the optional PrometheusRule."""
    obs = plan.observability
    if obs is None:
        return manifests
    added: list[Manifest] = []
    if obs.service_monitors:
        added += _monitors(plan, obs, manifests, obs.scrape_interval)
    if obs.prometheus_rules:
        added.append(_prometheus_rule(plan, monitored=obs.service_monitors))
    return manifests + added
