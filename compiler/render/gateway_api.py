"""``gateway.mode: envoy-gateway``: Gateway API objects for an Envoy Gateway already installed
in the cluster (part of the "gateway" renderer family, see :mod:`.gateway`).

- ``Gateway`` ``aibrix`` (class ``gateway.gatewayClassName``, default ``eg``, Envoy Gateway's conventional name),
  one HTTP listener on port 80 for routes of this namespace;
- ``InferencePool`` (``inference.networking.k8s.io/v1``) ``aibrix-engines`` selecting every
  engine pod of the stack on the models' ports, whose ``endpointPickerRef`` is our gateway's
  ext_proc port: Envoy Gateway asks it which pod serves each request, and the gateway answers
  with ``x-gateway-destination-endpoint`` as the Inference Extension's endpoint-picker protocol
  says (``failureMode: FailClose``: no routing without the picker, as in standalone mode);
- ``HTTPRoute`` ``aibrix``: every path of the Gateway to that pool;
- ``BackendTrafficPolicy`` on the route: the request and stream-idle timeouts =
  ``gateway.requestTimeout`` (generations stream for minutes), a 2 s connect timeout and a
  retry on connect failure or reset.

Envoy Gateway's proxy pods carry ``gateway.envoyproxy.io/owning-gateway-{name,namespace}``;
the plan's NetworkPlan admits them by those labels in any namespace.
"""

from __future__ import annotations

from typing import Any

from ..plan import GatewayPlan, Plan
from ..plan.components import ENVOY_GATEWAY_NAME
from .component_parts import meta

__all__ = ["GATEWAY_NAME", "POOL_NAME", "render_gateway_api"]

GATEWAY_NAME = ENVOY_GATEWAY_NAME
POOL_NAME = "aibrix-engines"
_ROUTE_GROUP = "gateway.networking.k8s.io"


def _go_duration(seconds: float) -> str:
    """Envoy Gateway's duration shape (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``)."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    return f"{whole}s" if whole < 100_000 else f"{whole // 60}m"


def render_gateway_api(plan: Plan, gw: GatewayPlan) -> list[dict[str, Any]]:
    """Gateway, InferencePool, HTTPRoute and BackendTrafficPolicy bodies."""
    timeout = _go_duration(gw.request_timeout_s)
    gateway = {
        "apiVersion": f"{_ROUTE_GROUP}/v1",
        "kind": "Gateway",
        "metadata": meta(GATEWAY_NAME),
        "spec": {
            "gatewayClassName": gw.gateway_class_name,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    }
    pool = {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": meta(POOL_NAME),
        "spec": {
            "selector": {"matchLabels": dict(plan.network.engine_selector)},
            "targetPorts": [{"number": p} for p in sorted({m.port for m in plan.models})],
            "endpointPickerRef": {
                "group": "",
                "kind": "Service",
                "name": gw.router.name,
                "port": {"number": gw.grpc_port},
                "failureMode": "FailClose",
            },
        },
    }
    route = {
        "apiVersion": f"{_ROUTE_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": meta(GATEWAY_NAME),
        "spec": {
            "parentRefs": [{"group": _ROUTE_GROUP, "kind": "Gateway", "name": GATEWAY_NAME}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": POOL_NAME}],
                }
            ],
        },
    }
    policy = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": meta(GATEWAY_NAME),
        "spec": {
            "targetRefs": [{"group": _ROUTE_GROUP, "kind": "HTTPRoute", "name": GATEWAY_NAME}],
            "timeout": {
                "http": {"requestTimeout": timeout, "streamIdleTimeout": timeout},
                "tcp": {"connectTimeout": "2s"},
            },
            "retry": {
                "numRetries": 2,
                "retryOn": {"triggers": ["connect-failure", "reset"]},
                "perRetry": {"backOff": {"baseInterval": "10ms", "maxInterval": "100ms"}},
            },
        },
    }
    return [gateway, pool, route, policy]
