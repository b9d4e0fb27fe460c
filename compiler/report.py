"""``aibrix-compile explain --format html``: one self-contained page about a stack.

:func:`report_context` gathers, as plain data from the plan and the stack as written, what the
page shows: models and adapters; per pool the GPUs used at min and max replicas and their cost
(the bounds ``explain`` prices: an autoscaled model sits on its cheapest pool at min and on its
most expensive at max); the components deployed and their endpoints; the routing, autoscaling
and KV choices, each marked as set in the stack or defaulted, with the reason for the default;
and the request path. :func:`render_html` spells it out with the Jinja2 template
``templates/report.html.j2`` (autoescaped, StrictUndefined, no JavaScript). Jinja2 is imported
there only, so the compile path never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .explain import model_costs
from .plan import ModelPlan, Plan
from .plan.types import ScaleUnit

__all__ = ["DEFAULT_REASONS", "pool_gpus", "render_html", "report_context"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Why each default is what it is (shown beside a choice the stack left to the default).
DEFAULT_REASONS: dict[str, str] = {
    "routing.policy": "least-request spreads load on live engine counters alone; it needs no prefix or LoRA state",
    "autoscaling.policy": "no autoscaling asked for: replicas.min engines, a fixed count",
    "autoscaling.metric": "requests in flight follow engine load whatever the prompt lengths, and every engine exports them",
    "autoscaling.target": "8 requests in flight per replica: a starting point, not a measurement; tune it from the dashboards",
    "engine.type": "vLLM: the engine every runtime component reads natively",
    "kvCache.enabled": "engines keep their own prefix cache only, unless the model opts into the shared pool",
    "kvCache.replicas": "3 servers: losing one loses a third of the cached blocks, never the whole pool",
    "kvCache.eviction": "adaptive follows LRU or S3-FIFO, whichever its sampled miniature caches show hitting more",
    "kvCache.blockSizeTokens": "16 tokens: vLLM's default block size, so pool keys line up with the engines' blocks",
    "gateway.mode": "standalone: the stack brings its own Envoy, so nothing has to be installed in the cluster first",
}


def _get(data: Any, *path: str | int) -> Any:
    """The value at ``path`` in the stack as written, or None where it was left out."""
    for key in path:
        if isinstance(data, Mapping) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def _choice(subject: str, setting: str, value: Any, written: Any) -> dict[str, str]:
    if written is not None:
        return {"subject": subject, "setting": setting, "value": str(value), "origin": "set in the stack", "reason": ""}
    return {"subject": subject, "setting": setting, "value": str(value), "origin": "default",
            "reason": DEFAULT_REASONS[setting]}


def pool_gpus(model: ModelPlan) -> tuple[dict[str, int], dict[str, int]]:
    """(pool -> GPUs at min, pool -> GPUs at max) of one model, on the bounds ``explain`` prices."""
    at_min: dict[str, int] = {}
    at_max: dict[str, int] = {}
    for unit in model.units():  # each role of a disaggregated model counts its own GPUs
        if not unit.autoscaled:
            for w in unit.workloads:
                gpus = (w.replicas or 0) * unit.gpus_per_replica
                at_min[w.pool.name] = at_min.get(w.pool.name, 0) + gpus
                at_max[w.pool.name] = at_max.get(w.pool.name, 0) + gpus
            continue
        pools = [w.pool for w in unit.workloads]
        cheapest = min(pools, key=lambda p: p.cost_per_gpu_hour)
        dearest = max(pools, key=lambda p: p.cost_per_gpu_hour)
        at_min[cheapest.name] = at_min.get(cheapest.name, 0) + unit.replicas_min * unit.gpus_per_replica
        at_max[dearest.name] = at_max.get(dearest.name, 0) + unit.replicas_max * unit.gpus_per_replica
    return at_min, at_max


def _per_role(unit: ScaleUnit, value: str) -> str:
    return value if unit.role is None else f"{unit.role} {value}"


def _models(plan: Plan) -> list[dict[str, Any]]:
    out = []
    for m in plan.models:
        at_min, at_max = model_costs(m)
        out.append({
            "name": m.name,
            "served_name": m.served_name,
            "engine": m.engine,
            "weights": m.weights.describe() if m.weights is not None else "",
            "adapters": [a.name for a in m.adapters.adapters] if m.adapters is not None else [],
            "pools": [w.pool.name for w in m.workloads],
            # A disaggregated model: each role's, "prefill 4 / decode 2".
            "gpus_per_replica": " / ".join(_per_role(u, str(u.gpus_per_replica)) for u in m.units()),
            "replicas": " / ".join(
                _per_role(u, f"{u.replicas_min}-{u.replicas_max}" if u.autoscaled else str(u.replicas_min))
                for u in m.units()
            ),
            "cost_min": f"{at_min:.2f}",
            "cost_max": f"{at_max:.2f}",
        })
    return out


def _pools(plan: Plan) -> list[dict[str, Any]]:
    at_min: dict[str, int] = {}
    at_max: dict[str, int] = {}
    for m in plan.models:
        low, high = pool_gpus(m)
        for pool, gpus in low.items():
            at_min[pool] = at_min.get(pool, 0) + gpus
        for pool, gpus in high.items():
            at_max[pool] = at_max.get(pool, 0) + gpus
    return [
        {
            "name": p.name,
            "product": p.product,
            "price": f"{p.cost_per_gpu_hour:.2f}",
            "gpus_min": at_min.get(p.name, 0),
            "gpus_max": at_max.get(p.name, 0),
            "cost_min": f"{at_min.get(p.name, 0) * p.cost_per_gpu_hour:.2f}",
            "cost_max": f"{at_max.get(p.name, 0) * p.cost_per_gpu_hour:.2f}",
        }
        for p in plan.pools
    ]


def _components(plan: Plan) -> list[dict[str, str]]:
    ns = plan.namespace
    out = [{"name": m.name, "what": f"{m.engine} engines", "endpoint": f"http://{m.name}.{ns}.svc:{m.port}"}
           for m in plan.models]
    gw = plan.gateway
    if gw is not None:
        if gw.envoy is not None:
            out.append({"name": gw.envoy.name, "what": "Envoy (client entry point)",
                        "endpoint": f"http://{gw.envoy.name}.{ns}.svc:{gw.envoy_port}"})
        else:
            out.append({"name": "aibrix", "what": f"Gateway API Gateway (class {gw.gateway_class_name})",
                        "endpoint": "the Gateway's address (Envoy Gateway)"})
        out.append({"name": gw.router.name, "what": f"routing gateway (ext_proc), {gw.replicas} replicas",
                    "endpoint": f"grpc://{gw.service_dns}:{gw.grpc_port}, http://{gw.service_dns}:{gw.http_port}/metrics"})
    if plan.kv_pool is not None:
        kv = plan.kv_pool
        out.append({"name": kv.component.name, "what": f"KV-cache pool, {kv.replicas} servers of {kv.memory_per_replica}",
                    "endpoint": f"tcp://{kv.dns_name}:{kv.port}"})
    if plan.scaler is not None:
        out.append({"name": plan.scaler.component.name, "what": f"autoscaler ({len(plan.scaler.targets)} targets)",
                    "endpoint": f":{plan.scaler.metrics_port}/metrics (PodMonitor)"})
    if plan.optimizer is not None:
        out.append({"name": plan.optimizer.component.name, "what": f"GPU-mix optimizer ({plan.optimizer.solver})",
                    "endpoint": plan.optimizer.metrics_url})
    if plan.diagnostics is not None:
        pools = ", ".join(p.name for p in plan.diagnostics.pools)
        out.append({"name": plan.diagnostics.component.name, "what": f"GPU diagnostics on pools {pools}",
                    "endpoint": f":{plan.diagnostics.metrics_port}/metrics on every GPU node"})
    if plan.observability is not None:
        obs = plan.observability
        parts = [name for name, on in (("ServiceMonitors", obs.service_monitors), ("alert rules", obs.prometheus_rules),
                                       ("Grafana dashboards", obs.dashboards)) if on]
        out.append({"name": "observability", "what": ", ".join(parts) or "nothing enabled",
                    "endpoint": f"scraped every {obs.scrape_interval}"})
    return out


def _choices(plan: Plan, raw: Mapping[str, Any]) -> list[dict[str, str]]:
    spec = _get(raw, "spec") or {}
    out = []
    for m in plan.models:
        written = _get(spec, "models", m.index) or {}
        out.append(_choice(m.name, "engine.type", m.engine, _get(written, "engine", "type")))
        if plan.gateway is not None:
            out.append(_choice(m.name, "routing.policy", m.routing.get("policy", "least-request"),
                               _get(written, "routing", "policy")))
        targets = [t for t in plan.scale_targets if t.model == m.name]
        policy = targets[0].policy if targets else "none"
        out.append(_choice(m.name, "autoscaling.policy", policy, _get(written, "autoscaling", "policy")))
        if targets:
            out.append(_choice(m.name, "autoscaling.metric", _get(written, "autoscaling", "metric")
                               or "num_requests_running", _get(written, "autoscaling", "metric")))
            out.append(_choice(m.name, "autoscaling.target", f"{targets[0].target:g}", _get(written, "autoscaling", "target")))
        if plan.kv_pool is not None:
            out.append(_choice(m.name, "kvCache.enabled", m.kv_connector, _get(written, "kvCache", "enabled")))
    if plan.gateway is not None:
        out.append(_choice("stack", "gateway.mode", plan.gateway.mode, _get(spec, "gateway", "mode")))
    kv = plan.kv_pool
    if kv is not None:
        out.append(_choice("stack", "kvCache.replicas", kv.replicas, _get(spec, "kvCache", "replicas")))
        out.append(_choice("stack", "kvCache.eviction", kv.eviction, _get(spec, "kvCache", "eviction")))
        out.append(_choice("stack", "kvCache.blockSizeTokens", kv.block_size_tokens,
                           _get(spec, "kvCache", "blockSizeTokens")))
    return out


def _path(plan: Plan) -> list[dict[str, str]]:
    """The request path, hop by hop, for the figure."""
    hops = [{"name": "client", "detail": "OpenAI API"}]
    gw = plan.gateway
    if gw is not None:
        hops.append({"name": "Envoy" if gw.envoy is not None else "Envoy Gateway",
                     "detail": gw.envoy.name if gw.envoy is not None else f"class {gw.gateway_class_name}"})
        hops.append({"name": gw.router.name, "detail": "auth, rate limits, picks the pod"})
    hops.append({"name": "engines", "detail": ", ".join(f"{m.name} on {'/'.join(w.pool.name for w in m.workloads)}"
                                                       for m in plan.models)})
    if plan.kv_pool is not None and any(m.kv_connector for m in plan.models):
        hops.append({"name": plan.kv_pool.component.name, "detail": "shared KV blocks"})
    return hops


def report_context(plan: Plan, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the page shows, as plain data (``raw``: the stack as written)."""
    totals = [model_costs(m) for m in plan.models]
    pools = _pools(plan)
    return {
        "stack": plan.stack_name,
        "namespace": plan.namespace,
        "models": _models(plan),
        "pools": pools,
        "gpus_min": sum(p["gpus_min"] for p in pools),
        "gpus_max": sum(p["gpus_max"] for p in pools),
        "cost_min": f"{sum(c[0] for c in totals):.2f}",
        "cost_max": f"{sum(c[1] for c in totals):.2f}",
        "components": _components(plan),
        "choices": _choices(plan, raw),
        "path": _path(plan),
        "side": [name for name, on in (("autoscaler", plan.scaler is not None or bool(plan.scale_targets)),
                                       ("optimizer", plan.optimizer is not None),
                                       ("diagnostics", plan.diagnostics is not None)) if on],
    }


def render_html(context: Mapping[str, Any]) -> str:
    """The page (autoescaped: every string from the stack is escaped)."""
    try:
        import jinja2
    except ImportError:
        from .errors import UsageError

        raise UsageError("the html report needs Jinja2; install it with pip install 'Jinja2>=3.1'") from None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2").render(**context)
