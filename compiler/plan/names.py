"""Names and ports of the stack's own components, written once.

Renderers name objects with these and the plan wires components together with them (a
URL one component scrapes is built from the other's name and port here, never twice).
"""

from __future__ import annotations

__all__ = [
    "DIAG",
    "DIAG_METRICS_PORT",
    "ENGINE",
    "ENVOY",
    "ENVOY_ADMIN_PORT",
    "ENVOY_PORT",
    "GATEWAY",
    "GATEWAY_GRPC_PORT",
    "GATEWAY_HTTP_PORT",
    "GATEWAY_RETRIES",
    "KV_CONNECTOR",
    "KV_EVENTS_PORT",
    "KV_EVENTS_PORT_NAME",
    "KV_METRICS_PORT",
    "KV_POOL",
    "KV_POOL_PORT",
    "NIXL_PORT_NAME",
    "NIXL_SIDE_CHANNEL_PORT",
    "OPTIMIZER",
    "OPTIMIZER_PORT",
    "SCALER",
    "ROLE_LABEL",
    "SCALER_METRICS_PORT",
    "SGLANG_BOOTSTRAP_PORT",
    "SGLANG_BOOTSTRAP_PORT_NAME",
]

#: Component label of engine pods (vLLM / SGLang, Ray heads and workers).
ENGINE = "engine"

GATEWAY = "aibrix-gateway"
GATEWAY_GRPC_PORT = 50051
GATEWAY_HTTP_PORT = 8080
#: Envoy retries a failed connect/reset on the gateway's next-best pods; the gateway names this many.
GATEWAY_RETRIES = 2
ENVOY = "aibrix-envoy"
ENVOY_PORT = 8080
ENVOY_ADMIN_PORT = 9901

SCALER = "aibrix-scaler"
SCALER_METRICS_PORT = 9090

OPTIMIZER = "aibrix-optimizer"
OPTIMIZER_PORT = 8080

KV_POOL = "aibrix-kv-cache"
KV_POOL_PORT = 9600
KV_METRICS_PORT = 9601
#: Class and module of the pool's vLLM connector (runtime_components/kv/vllm_connector.py).
KV_CONNECTOR = ("AIBrixKVConnector", "runtime_components.kv.vllm_connector")

#: Engine pods' KV-cache event publisher (vLLM --kv-events-config; vLLM's default port), when the
#: model's prefix index is kv-events; named container port KV_EVENTS_PORT_NAME.
KV_EVENTS_PORT = 5557
KV_EVENTS_PORT_NAME = "kv-events"

#: Pod label of a disaggregated model's engine pods: prefill or decode.
ROLE_LABEL = "model.aibrix.ai/role"
#: vLLM NixlConnector's side channel (VLLM_NIXL_SIDE_CHANNEL_PORT, vLLM's default 5600): tensor-parallel
#: rank r of a pod listens on 5600 + r; named container ports nixl, nixl-1, ... .
NIXL_SIDE_CHANNEL_PORT = 5600
NIXL_PORT_NAME = "nixl"
#: SGLang's prefill bootstrap server (--disaggregation-bootstrap-port, SGLang's default 8998).
SGLANG_BOOTSTRAP_PORT = 8998
SGLANG_BOOTSTRAP_PORT_NAME = "pd-bootstrap"

DIAG = "aibrix-diag"
DIAG_METRICS_PORT = 9402
