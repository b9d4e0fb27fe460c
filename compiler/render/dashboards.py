"""Renderer family "dashboards": Grafana dashboards as ConfigMaps for the Grafana sidecar.

Only with ``observability.dashboards: true``. Each dashboard is built here from the plan as
data (no JSON templates) and lands in a ConfigMap labelled ``grafana_dashboard: "1"``, the
label the Grafana sidecar (kube-prometheus-stack, the grafana chart) watches by default.

Dashboards, each only when the stack deploys what it shows:

- ``overview``: completed requests, gateway errors, TTFT and inter-token latency percentiles
  per model, tokens per second, GPU cost per hour (engine pods per pool x GPUs per replica x
  the pool's price per GPU hour);
- ``gateway``: routing decisions and their time per policy, prefix hit ratio, rate-limit
  rejections, requests by status, endpoints by state;
- ``engines``: KV-cache usage per pod, running and waiting requests, preemptions (vLLM),
  engine prefix-cache hit ratio, engine pods per pool;
- ``autoscaler`` (KPA/APA targets of our scaler): desired, current and ready replicas, the
  metric against target x ready replicas, decisions by reason;
- ``kv-pool``: hit ratio, evictions, bytes used and capacity, bytes read and written, writes
  by outcome;
- ``diagnostics``: GPU node status, failing or warning checks and NVML presence per node.

Queries filter on the stack's namespace; engine metrics are spelled in each model's dialect
(:mod:`aibrix_spec.engine_metrics`), and a panel whose metric the dialect lacks is left out.
``pool`` and ``node`` come from the monitors' relabelings (``observability`` family).
Output is deterministic: uids are hashes of stack, namespace and dashboard key, and the JSON
is dumped with sorted keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aibrix_spec.engine_metrics import translate_name

from ..manifest import Manifest
from ..plan import ModelPlan, Plan, ScaleTarget

__all__ = ["COMPONENT", "DASHBOARD_LABEL", "dashboards", "render"]

COMPONENT = "observability"
#: The label (and value) the Grafana sidecar selects dashboard ConfigMaps by.
DASHBOARD_LABEL = ("grafana_dashboard", "1")
_SCHEMA_VERSION = 39
_WIDTH, _HEIGHT, _COLUMNS = 12, 8, 24
_RATE = "[$__rate_interval]"
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

Target = tuple[str, str]  #: (PromQL expression, legend)


def _panel(title: str, targets: list[Target], *, unit: str = "short", description: str = "") -> dict[str, Any]:
    """A time-series panel (id and position are assigned by :func:`_dashboard`)."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": dict(_DATASOURCE),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": _ref_id(i), "expr": expr, "legendFormat": legend, "datasource": dict(_DATASOURCE)}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _ref_id(i: int) -> str:
    """A, B, ... Z, AA, AB, ...: Grafana's own refId sequence."""
    letters = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _uid(plan: Plan, key: str) -> str:
    digest = hashlib.sha256(f"{plan.stack_name}/{plan.namespace}/{key}".encode()).hexdigest()
    return f"aibrix-{digest[:16]}"


def _dashboard(plan: Plan, key: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    """A dashboard with panels laid out two per row, ids from 1."""
    placed: list[dict[str, Any]] = []
    for i, panel in enumerate(p for p in panels if p["targets"]):
        x = (i % (_COLUMNS // _WIDTH)) * _WIDTH
        y = (i // (_COLUMNS // _WIDTH)) * _HEIGHT
        placed.append({"id": len(placed) + 1, "gridPos": {"h": _HEIGHT, "w": _WIDTH, "x": x, "y": y}, **panel})
    return {
        "uid": _uid(plan, key),
        "title": f"AIBrix {plan.stack_name} / {title}",
        "tags": ["aibrix", plan.stack_name],
        "timezone": "browser",
        "schemaVersion": _SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [{
            "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "hide": 0,
        }]},
        "panels": placed,
    }


def _ns(plan: Plan) -> str:
    return f'namespace="{plan.namespace}"'


def _match(plan: Plan, model: ModelPlan) -> str:
    return f'{_ns(plan)},model_name="{model.served_name}"'


def _name(model: ModelPlan, vllm_name: str) -> str | None:
    """The model's engine's name for a vLLM metric; None when its dialect lacks it."""
    names = translate_name(vllm_name, model.engine)
    if not names or (names[0] == vllm_name and model.engine != "vllm"):
        return None  # unknown to the table: only vLLM is known to export it
    return names[0]


def _per_model(plan: Plan, vllm_name: str, build: Any) -> list[Target]:
    """``build(model, name, match)`` -> targets, for every model whose dialect has the metric."""
    out: list[Target] = []
    for model in plan.models:
        name = _name(model, vllm_name)
        if name is not None:
            out += build(model, name, _match(plan, model))
    return out


def _quantiles(metric: str, match: str, label: str, quantiles: tuple[float, ...]) -> list[Target]:
    return [
        (f"histogram_quantile({q:g}, sum by (le) (rate({metric}{{{match}}}{_RATE})))", f"{label} p{round(q * 100)}")
        for q in quantiles
    ]


def _pool_count(name: str, match: str, pool: str, role: str | None = None) -> str:
    """Engine pods of one pool (and role, for a disaggregated model) serving the model (one
    series per pod and engine core)."""
    where = f'pool="{pool}"' + (f',role="{role}"' if role is not None else "")
    return f'(count(count by (pod) ({name}{{{match},{where}}})) or vector(0))'


def _cost(plan: Plan) -> list[Target]:
    """Per model: engine pods per pool x GPUs per replica x the pool's price (multi-node
    models expose only their Ray heads, one per replica, so pods = replicas)."""
    out: list[Target] = []
    for model in plan.models:
        name = _name(model, "vllm:num_requests_running")
        if name is None:
            continue
        terms = [
            f"{_pool_count(name, _match(plan, model), w.pool.name, w.role)} * {w.gpus_per_replica * w.pool.cost_per_gpu_hour:g}"
            for w in sorted(model.workloads, key=lambda w: (w.pool.name, w.role or ""))
        ]
        out.append((" + ".join(terms), model.name))
    return out


def _overview(plan: Plan) -> list[dict[str, Any]]:
    ns = _ns(plan)
    panels = [
        _panel("Completed requests per second", _per_model(
            plan, "vllm:e2e_request_latency_seconds_count",
            lambda m, n, match: [(f"sum(rate({n}{{{match}}}{_RATE}))", m.name)]), unit="reqps"),
    ]
    if plan.gateway is not None:
        expr = f'sum by (model, status) (rate(aibrix_gateway_requests_total{{{ns},status=~"5..|aborted"}}{_RATE}))'
        panels.append(_panel("Gateway errors per second (5xx, aborted)", [(expr, "{{model}} {{status}}")], unit="reqps"))
    panels += [
        _panel("Time to first token", _per_model(
            plan, "vllm:time_to_first_token_seconds_bucket",
            lambda m, n, match: _quantiles(n, match, m.name, (0.5, 0.9, 0.99))), unit="s"),
        _panel("Inter-token latency", _per_model(
            plan, "vllm:inter_token_latency_seconds_bucket",
            lambda m, n, match: _quantiles(n, match, m.name, (0.5, 0.99))), unit="s"),
        _panel("Tokens per second", _per_model(
            plan, "vllm:generation_tokens_total",
            lambda m, n, match: [(f"sum(rate({n}{{{match}}}{_RATE}))", f"{m.name} generated")])
            + _per_model(plan, "vllm:prompt_tokens_total",
                         lambda m, n, match: [(f"sum(rate({n}{{{match}}}{_RATE}))", f"{m.name} prompt")])),
        _panel("GPU cost per hour", _cost(plan), unit="currencyUSD",
               description="Engine pods per pool x GPUs per replica x the pool's costPerGpuHour."),
    ]
    return panels


def _gateway(plan: Plan) -> list[dict[str, Any]]:
    ns = _ns(plan)
    decisions = "aibrix_gateway_routing_decision_seconds"
    ratio = "aibrix_gateway_prefix_match_ratio"
    return [
        _panel("Routing decisions per second by policy",
               [(f"sum by (policy) (rate({decisions}_count{{{ns}}}{_RATE}))", "{{policy}}")], unit="reqps"),
        _panel("Routing decision time p99 by policy",
               [(f"histogram_quantile(0.99, sum by (le, policy) (rate({decisions}_bucket{{{ns}}}{_RATE})))",
                 "{{policy}}")], unit="s"),
        _panel("Prefix hit ratio by model",
               [(f"sum by (model) (rate({ratio}_sum{{{ns}}}{_RATE})) / sum by (model) (rate({ratio}_count{{{ns}}}{_RATE}))",
                 "{{model}}")], unit="percentunit",
               description="Mean fraction of prompt blocks the chosen pod held (prefix-cache-aware policies)."),
        _panel("Rate-limit rejections", [
            (f"sum by (tier, limit) (rate(aibrix_gateway_rate_limited_total{{{ns}}}{_RATE}))", "{{tier}} {{limit}}"),
            (f"sum(rate(aibrix_gateway_rate_limit_errors_total{{{ns}}}{_RATE}))", "limiter store errors (served unlimited)"),
        ], unit="reqps"),
        _panel("Requests by status",
               [(f"sum by (status) (rate(aibrix_gateway_requests_total{{{ns}}}{_RATE}))", "{{status}}")], unit="reqps"),
        _panel("Endpoints by state", [(f"sum by (model, state) (aibrix_gateway_endpoints{{{ns}}})", "{{model}} {{state}}")]),
        *_flow_panels(plan),
        *_pd_panels(plan),
        *_sync_panels(plan),
    ]


def _flow_panels(plan: Plan) -> list[dict[str, Any]]:
    """Queues of flow control (gateway.flowControl.enabled): held requests and their wait."""
    gw = plan.gateway
    if gw is None or not gw.flow_control.enabled:
        return []
    ns = _ns(plan)
    wait = "aibrix_gateway_flow_wait_seconds"
    return [
        _panel("Held requests by model", [
            (f"sum by (model) (aibrix_gateway_flow_held_requests{{{ns}}})", "{{model}} held"),
            (f"sum by (model) (aibrix_gateway_flow_inflight_requests{{{ns}}})", "{{model}} at engines"),
        ], description="Requests flow control holds until an engine has room, and those sent; the scaler's demand."),
        _panel("Queue wait p99 by model",
               [(f"histogram_quantile(0.99, sum by (le, model) (rate({wait}_bucket{{{ns}}}{_RATE})))", "{{model}}")],
               unit="s"),
    ]


def _pd_panels(plan: Plan) -> list[dict[str, Any]]:
    """Prefill/decode pairs (models[].disaggregation): which path requests took, why a prefill
    step fell back to decoding in place, and how long the prefill calls took."""
    if plan.gateway is None or not any(m.disaggregation is not None for m in plan.models):
        return []
    ns = _ns(plan)
    seconds = "aibrix_gateway_pd_prefill_seconds"
    return [
        _panel("Prefill/decode paths by model",
               [(f"sum by (model, path) (rate(aibrix_gateway_pd_requests_total{{{ns}}}{_RATE}))", "{{model}} {{path}}")],
               unit="reqps", description="disaggregated: prefilled on a prefill pod; short: under minPromptTokens "
               "(short_on_prefill_pod: run whole on an idle prefill pod); fallback: decoded in place."),
        _panel("Prefill fallbacks by reason",
               [(f"sum by (model, reason) (rate(aibrix_gateway_pd_fallbacks_total{{{ns}}}{_RATE}))",
                 "{{model}} {{reason}}")], unit="reqps",
               description="Requests decoded in place because the prefill step failed; none is refused."),
        _panel("Prefill call time p99 by model",
               [(f"histogram_quantile(0.99, sum by (le, model) (rate({seconds}_bucket{{{ns}}}{_RATE})))", "{{model}}")],
               unit="s"),
    ]


def _sync_panels(plan: Plan) -> list[dict[str, Any]]:
    """Routing state shared through the stack's Redis (gateway.redis): is every replica connected?"""
    gw = plan.gateway
    if gw is None or gw.redis_url is None:
        return []
    ns = _ns(plan)
    return [
        _panel("Gateway replicas sharing routing state", [
            (f"sum(aibrix_gateway_routing_sync_connected{{{ns}}})", "connected"),
            (f"count(aibrix_gateway_routing_sync_connected{{{ns}}})", "replicas"),
        ], description="A replica that lost Redis routes on its own prefix index until it reconnects."),
    ]


def _engines(plan: Plan) -> list[dict[str, Any]]:
    def ratio(m: ModelPlan, hits: str, match: str) -> list[Target]:
        queries = _name(m, "vllm:prefix_cache_queries_total")
        if queries is None:
            return []
        return [(f"sum(rate({hits}{{{match}}}{_RATE})) / sum(rate({queries}{{{match}}}{_RATE}))", m.name)]

    return [
        _panel("KV-cache usage per pod", _per_model(
            plan, "vllm:kv_cache_usage_perc",
            lambda m, n, match: [(f"max by (pod) ({n}{{{match}}})", f"{m.name} {{{{pod}}}}")]), unit="percentunit"),
        _panel("Running and waiting requests", _per_model(
            plan, "vllm:num_requests_running", lambda m, n, match: [(f"sum({n}{{{match}}})", f"{m.name} running")])
            + _per_model(plan, "vllm:num_requests_waiting",
                         lambda m, n, match: [(f"sum({n}{{{match}}})", f"{m.name} waiting")])),
        _panel("Preemptions per second", _per_model(
            plan, "vllm:num_preemptions_total",
            lambda m, n, match: [(f"sum(rate({n}{{{match}}}{_RATE}))", m.name)])),
        _panel("Engine prefix-cache hit ratio", _per_model(plan, "vllm:prefix_cache_hits_total", ratio),
               unit="percentunit"),
        _panel("Engine pods per pool", _per_model(
            plan, "vllm:num_requests_running",
            lambda m, n, match: [(f"count by (pool) (count by (pod, pool) ({n}{{{match}}}))", f"{m.name} {{{{pool}}}}")])),
    ]


def _autoscaler(plan: Plan, targets: tuple[ScaleTarget, ...]) -> list[dict[str, Any]]:
    ns = _ns(plan)
    replicas: list[Target] = []
    metric: list[Target] = []
    for t in targets:
        sel = f'{ns},target="{t.workload}"'
        replicas += [(f"aibrix_scaler_{kind}_replicas{{{sel}}}", f"{t.workload} {kind}")
                     for kind in ("desired", "current", "ready")]
        metric += [
            (f"aibrix_scaler_metric_total{{{sel}}}", f"{t.workload} {t.metric}"),
            (f"{t.target:g} * aibrix_scaler_ready_replicas{{{sel}}}", f"{t.workload} target x ready"),
        ]
    return [
        _panel("Desired, current and ready replicas", replicas),
        _panel("Scaling metric vs target x ready replicas", metric,
               description="The scaler keeps the metric's total near target x replicas."),
        _panel("Decisions by reason",
               [(f"sum by (target, reason) (rate(aibrix_scaler_decisions_total{{{ns}}}{_RATE}))", "{{target}} {{reason}}")]),
    ]


def _kv_pool(plan: Plan) -> list[dict[str, Any]]:
    ns = _ns(plan)

    def rate(name: str) -> str:
        return f"sum(rate({name}{{{ns}}}{_RATE}))"

    return [
        _panel("Hit ratio", [(f"{rate('aibrix_kv_hits_total')} / ({rate('aibrix_kv_hits_total')} + "
                              f"{rate('aibrix_kv_misses_total')})", "hit ratio")], unit="percentunit"),
        _panel("Evictions per second", [(rate("aibrix_kv_evictions_total"), "evictions")]),
        _panel("Bytes used and capacity", [(f"sum(aibrix_kv_used_bytes{{{ns}}})", "used"),
                                           (f"sum(aibrix_kv_capacity_bytes{{{ns}}})", "capacity")], unit="bytes"),
        _panel("Bytes read and written", [(rate("aibrix_kv_read_bytes_total"), "read"),
                                          (rate("aibrix_kv_written_bytes_total"), "written")], unit="Bps"),
        _panel("Block writes by outcome",
               [(f"sum by (status) (rate(aibrix_kv_puts_total{{{ns}}}{_RATE}))", "{{status}}")], unit="ops"),
    ]


def _diagnostics(plan: Plan) -> list[dict[str, Any]]:
    ns = _ns(plan)
    return [
        _panel("GPU node status (0 ok, 1 warn, 2 fail, 3 no NVML)",
               [(f"max by (node) (aibrix_diag_node_status{{{ns}}})", "{{node}}")]),
        _panel("Checks warning or failing",
               [(f"max by (node, check) (aibrix_diag_check_status{{{ns}}}) > 0", "{{node}} {{check}}")]),
        _panel("NVML available", [(f"min by (node) (aibrix_diag_nvml_available{{{ns}}})", "{{node}}")]),
    ]


def dashboards(plan: Plan) -> dict[str, dict[str, Any]]:
    """Every dashboard the stack gets, by key (empty unless dashboards are on)."""
    if plan.observability is None or not plan.observability.dashboards:
        return {}
    boards = {"overview": _dashboard(plan, "overview", "Overview", _overview(plan))}
    if plan.gateway is not None:
        boards["gateway"] = _dashboard(plan, "gateway", "Gateway", _gateway(plan))
    boards["engines"] = _dashboard(plan, "engines", "Engines", _engines(plan))
    if plan.scaler is not None and plan.scaler.targets:
        boards["autoscaler"] = _dashboard(plan, "autoscaler", "Autoscaler", _autoscaler(plan, plan.scaler.targets))
    if plan.kv_pool is not None:
        boards["kv-pool"] = _dashboard(plan, "kv-pool", "KV-cache pool", _kv_pool(plan))
    if plan.diagnostics is not None:
        boards["diagnostics"] = _dashboard(plan, "diagnostics", "GPU diagnostics", _diagnostics(plan))
    return boards


def render(plan: Plan) -> list[Manifest]:
    out = []
    for key, board in dashboards(plan).items():
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"aibrix-dashboard-{key}",
                "labels": {"app.kubernetes.io/name": f"aibrix-dashboard-{key}", DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]},
            },
            "data": {f"aibrix-{key}.json": json.dumps(board, indent=2, sort_keys=True) + "\n"},
        }
        out.append(Manifest(COMPONENT, body))
    return out
