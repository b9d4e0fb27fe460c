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
the NetworkPolicies of :mod:`.gateway` admit them by those labels in any namespace.
"""

from __future__ import annotations

from typing import Any

from ..plan import Plan
from . import core
from .component_parts import duration_seconds, meta

__all__ = ["GATEWAY_NAME", "POOL_NAME", "envoy_gateway_proxy_peer", "render_gateway_api"]

GATEWAY_NAME = "aibrix"
POOL_NAME = "aibrix-engines"
_ROUTE_GROUP = "gateway.networking.k8s.io"


def envoy_gateway_proxy_peer(plan: Plan) -> dict[str, Any]:
    """NetworkPolicy peer: the Envoy proxies Envoy Gateway runs for our Gateway."""
    return {
        "namespaceSelector": {},
        "podSelector": {
            "matchLabels": {
                "gateway.envoyproxy.io/owning-gateway-name": GATEWAY_NAME,
                "gateway.envoyproxy.io/owning-gateway-namespace": plan.namespace,
            }
        },
    }


def _go_duration(seconds: float) -> str:
    """Envoy Gateway's duration shape (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``)."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    return f"{whole}s" if whole < 100_000 else f"{whole // 60}m"


def render_gateway_api(plan: Plan, *, gateway_service: str, grpc_port: int) -> list[dict[str, Any]]:
    """Gateway, InferencePool, HTTPRoute and BackendTrafficPolicy bodies."""
    timeout = _go_duration(duration_seconds(plan.stack.spec.gateway.request_timeout))  # type: ignore[union-attr]
    engines = {"app.kubernetes.io/component": core.COMPONENT, "app.kubernetes.io/instance": plan.stack_name}
    gateway = {
        "apiVersion": f"{_ROUTE_GROUP}/v1",
        "kind": "Gateway",
        "metadata": meta(GATEWAY_NAME),
        "spec": {
            "gatewayClassName": plan.stack.spec.gateway.gateway_class_name,  # type: ignore[union-attr]
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}],
        },
    }
    pool = {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": meta(POOL_NAME),
        "spec": {
            "selector": {"matchLabels": engines},
            "targetPorts": [{"number": p} for p in sorted({m.port for m in plan.models})],
            "endpointPickerRef": {
                "group": "",
                "kind": "Service",
                "name": gateway_service,
                "port": {"number": grpc_port},
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
