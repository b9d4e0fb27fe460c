"""The Envoy bootstrap of a standalone gateway, as a plain dict (pure: the standard library and
the gateway's header contract from ``aibrix_spec.components.gateway``).

Where it sits: the compiler's gateway renderer puts ``yaml.dump(envoy_bootstrap(...))`` into
the Envoy ConfigMap; the gateway's integration tests start real Envoy with exactly this
output. One listener carries every request through two HTTP filters:

1. ``ext_proc`` -> the aibrix gateway (gRPC, HTTP/2): request headers and the request body
   BUFFERED (the gateway needs the whole JSON to route); the response phases are skipped
   unless the gateway turns them on for one request (``allow_mode_override``: response
   headers SEND, response body STREAMED, so usage counting never delays token streaming)
   when it must read the response: TPM budgets, workload samples. So a request the gateway
   need not read costs two messages. ``failure_mode_allow`` is false: without the gateway
   nothing is routed (Envoy answers 500). With ``ext_proc_workers`` N > 1 the cluster lists
   one endpoint per worker port (``ext_proc_port + i``) and round-robins streams over them.
   ``forward_rules`` sends the gateway only the headers it reads (``forward_headers``; by
   default ``aibrix_spec.components.gateway``'s fixed list): Envoy serializes, and the gateway
   decodes, every forwarded header on every request.
2. ``router`` -> cluster ``engines``: ORIGINAL_DST keyed on ``x-gateway-destination-endpoint``
   (``use_http_header``), so the pod the gateway chose is the pod that serves.

Timeouts: generations can stream for minutes, so the route timeout is ``request_timeout_s``
(default 600 s) and the stream idle timeout matches it (a non-streaming request is silent
until it finishes). Buffers: ``per_connection_buffer_limit_bytes`` bounds the buffered
request body (Envoy's 1 MiB default rejects long prompts with 413); it is the stack's
``gateway.maxRequestBodyBytes``, which the gateway's gRPC receive limit follows, so a body Envoy
passes on always reaches the gateway and a larger one is Envoy's 413.

Local replies: what Envoy answers itself (413 for a body over the buffer, 503 "no healthy
upstream" or "upstream connect error" when every engine it tried is down, 500 when the
gateway cannot be reached) is reshaped by ``local_reply_config`` into the OpenAI error body
``{"error": {"message", "type", "param", "code"}}`` that the gateway's own refusals carry. The
gateway's refusals are local replies too (ext_proc immediate responses) and are already JSON:
a CEL filter on ``response.code_details`` (the gateway names every refusal ``aibrix_gateway_*``)
leaves them untouched.

Retries reach another pod: with ORIGINAL_DST every attempt goes to the address in the
destination header, and the ext_proc is consulted once per request, not per attempt. So the
gateway also names fallbacks (``x-gateway-destination-fallback-1`` .. ``-N``, its next-best
candidates) and the ``engines`` cluster runs an *upstream* ``header_mutation`` filter, which
runs once per attempt after the host was chosen and shifts the list by one
(destination <- fallback-1, fallback-1 <- fallback-2, ...). The router reuses that header map
for a retry, so attempt k+1 goes to fallback k. Retries fire on ``connect-failure, reset,
refused-stream`` and on ``5xx`` answers (a dying engine may answer its in-flight requests
500 rather than drop them), always before any response byte reaches the client; a stream cut later is
not retried. ``x-envoy-attempt-count`` in the response tells the gateway an attempt failed, so
it takes the failed pod out of the candidates at once. docs/gateway.md records what the tests measured.
"""

from __future__ import annotations

from typing import Any

from aibrix_spec.components.gateway import ext_proc_headers

__all__ = ["DESTINATION_HEADER", "FALLBACK_HEADER_PREFIX", "envoy_bootstrap"]

DESTINATION_HEADER = "x-gateway-destination-endpoint"
#: Fallback k (1-based) is ``f"{FALLBACK_HEADER_PREFIX}{k}"``; the gateway sets them.
FALLBACK_HEADER_PREFIX = "x-gateway-destination-fallback-"


_RETRY_ON = {"5xx", "gateway-error", "connect-failure", "reset", "refused-stream", "retriable-status-codes"}


def _duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _shift(key: str, source: str) -> dict[str, Any]:
    """A header_mutation entry: ``key`` <- the current value of header ``source``."""
    value = f"%REQ({source})%"
    return {"append": {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}


def _socket(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


#: CEL: true for Envoy's own local replies, false for the gateway's refusals (already JSON).
_NOT_THE_GATEWAY = "!response.code_details.startsWith('aibrix_gateway')"


def _openai_error(message: str, error_type: str, code: str) -> dict[str, Any]:
    return {"json_format": {"error": {"message": message, "type": error_type, "param": None, "code": code}}}


def _local_reply_config(body_limit: int) -> dict[str, Any]:
    """Mappers that give Envoy's own replies the OpenAI error shape (first match wins)."""

    def when(op: str, status: int) -> dict[str, Any]:
        compare = {
            "status_code_filter": {
                "comparison": {
                    "op": op,
                    "value": {"default_value": status, "runtime_key": f"aibrix.local_reply.{op.lower()}_{status}"},
                }
            }
        }
        cel = {
            "extension_filter": {
                "name": "envoy.access_loggers.extension_filters.cel",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                    "expression": _NOT_THE_GATEWAY,
                },
            }
        }
        return {"and_filter": {"filters": [cel, compare]}}

    too_large = (
        f"The request body is larger than this gateway accepts ({body_limit} bytes); "
        "send a shorter prompt or raise gateway.maxRequestBodyBytes"
    )
    return {
        "mappers": [
            {
                "filter": when("EQ", 413),
                "body_format_override": _openai_error(too_large, "invalid_request_error", "request_too_large"),
            },
            {
                "filter": when("EQ", 500),
                "body_format_override": _openai_error(
                    "The gateway could not process the request (%RESPONSE_CODE_DETAILS%)", "server_error", "gateway_unavailable"
                ),
            },
            {
                "filter": when("GE", 500),
                "body_format_override": _openai_error(
                    "No engine could serve the request: %LOCAL_REPLY_BODY% (%RESPONSE_CODE_DETAILS%)",
                    "service_unavailable",
                    "upstream_unavailable",
                ),
            },
            {
                "filter": when("GE", 400),
                "body_format_override": _openai_error(
                    "%LOCAL_REPLY_BODY% (%RESPONSE_CODE_DETAILS%)", "invalid_request_error", "invalid_request"
                ),
            },
        ]
    }


def envoy_bootstrap(
    *,
    ext_proc_host: str,
    ext_proc_port: int,
    ext_proc_workers: int = 1,
    ext_proc_ports: tuple[int, ...] = (),
    listener_port: int = 8080,
    listener_address: str = "0.0.0.0",
    admin_port: int = 9901,
    admin_address: str = "127.0.0.1",
    request_timeout_s: float = 600.0,
    connect_timeout_s: float = 2.0,
    ext_proc_message_timeout_s: float = 5.0,
    per_connection_buffer_limit_bytes: int = 8 * 1024 * 1024,
    num_retries: int = 2,
    retry_on: str = "5xx,connect-failure,reset,refused-stream",
    max_requests: int = 100_000,
    forward_headers: tuple[str, ...] | None = None,
    generate_request_ids: bool = True,
) -> dict[str, Any]:
    """Return the bootstrap for an Envoy in front of the gateway at ``ext_proc_host:ext_proc_port``.

    ``ext_proc_host`` may be a DNS name (resolved with STRICT_DNS; point it at a headless
    Service so Envoy spreads ext_proc streams over every gateway replica) or an IP. Workers
    listen on ``ext_proc_port + i`` for ``i < ext_proc_workers``; ``ext_proc_ports`` names
    the ports instead (tests and benchmarks, whose workers pick free ports).
    ``forward_headers``: the header names ext_proc sends the gateway
    (``aibrix_spec.components.gateway.ext_proc_headers`` of its config); None: the fixed ones.
    ``generate_request_ids``: Envoy adds an ``x-request-id`` to requests that carry none
    (``aibrix_spec.components.gateway.needs_request_ids`` of its config says whether the
    gateway uses one); a client's own id reaches the engine either way.

    >>> b = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=50051)
    >>> b["static_resources"]["clusters"][0]["original_dst_lb_config"]["http_header_name"]
    'x-gateway-destination-endpoint'
    """
    for name, port in (("listener_port", listener_port), ("admin_port", admin_port), ("ext_proc_port", ext_proc_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{name} must be within 0..65535 (0 = any free port), got {port}")
    if ext_proc_port == 0:
        raise ValueError("ext_proc_port must be the gateway's real gRPC port, not 0")
    ports = tuple(ext_proc_ports) or tuple(ext_proc_port + i for i in range(ext_proc_workers))
    if any(not 0 < p <= 65535 for p in ports):
        raise ValueError(f"ext_proc_ports must be real ports within 1..65535, got {list(ports)}")
    if not 1 <= ext_proc_workers <= 64 or ext_proc_port + ext_proc_workers - 1 > 65535:
        raise ValueError(
            f"ext_proc_workers must be within 1..64 with ports up to 65535, got {ext_proc_workers} from {ext_proc_port}"
        )
    if forward_headers is None:
        forward_headers = ext_proc_headers()
    if not forward_headers or any(not h or h != h.lower() for h in forward_headers):
        raise ValueError(f"forward_headers must be non-empty lower-case header names, got {list(forward_headers)}")
    if not ext_proc_host:
        raise ValueError("ext_proc_host must name the gateway (a Service DNS name or an IP)")
    if per_connection_buffer_limit_bytes < 64 * 1024:
        raise ValueError("per_connection_buffer_limit_bytes below 64 KiB would reject ordinary prompts with 413")
    if request_timeout_s <= 0 or connect_timeout_s <= 0 or ext_proc_message_timeout_s <= 0:
        raise ValueError("timeouts must be positive numbers of seconds")
    if not 0 <= num_retries <= 10:
        raise ValueError(f"num_retries must be within 0..10, got {num_retries}")
    unknown = set(retry_on.split(",")) - _RETRY_ON
    if unknown:
        raise ValueError(
            f"retry_on has unknown condition(s) {', '.join(sorted(unknown))}; expected some of {', '.join(sorted(_RETRY_ON))}"
        )

    ext_proc_filter = {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": "aibrix-gateway"}, "timeout": _duration(ext_proc_message_timeout_s)},
            "failure_mode_allow": False,
            "message_timeout": _duration(ext_proc_message_timeout_s),
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SKIP",
                "request_body_mode": "BUFFERED",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            # The gateway asks for the response phases per request, in its answer to the request headers.
            "allow_mode_override": True,
            "forward_rules": {"allowed_headers": {"patterns": [{"exact": name} for name in forward_headers]}},
        },
    }
    router_filter = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    route = {
        "match": {"prefix": "/"},
        "route": {
            "cluster": "engines",
            "timeout": _duration(request_timeout_s),
            "retry_policy": {
                "retry_on": retry_on,
                "num_retries": num_retries,
                "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.1s"},
            },
        },
    }
    connection_manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "inference",
            # A UUID per request costs Envoy about 6 % of its CPU per request (docs/gateway.md).
            "generate_request_id": generate_request_ids,
            "codec_type": "AUTO",
            "stream_idle_timeout": _duration(request_timeout_s),
            "local_reply_config": _local_reply_config(per_connection_buffer_limit_bytes),
            "route_config": {
                "name": "inference",
                "virtual_hosts": [
                    {"name": "inference", "domains": ["*"], "routes": [route], "include_attempt_count_in_response": True}
                ],
            },
            "http_filters": [ext_proc_filter, router_filter],
        },
    }
    thresholds = {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": max_requests,
                "max_pending_requests": max_requests,
                "max_requests": max_requests,
                "max_retries": max(3, max_requests // 100),
            }
        ]
    }
    chain = [DESTINATION_HEADER] + [f"{FALLBACK_HEADER_PREFIX}{k}" for k in range(1, num_retries + 1)]
    shifts = [_shift(chain[k], chain[k + 1]) for k in range(len(chain) - 1)]
    engines = {
        "name": "engines",
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": _duration(connect_timeout_s),
        "original_dst_lb_config": {"use_http_header": True, "http_header_name": DESTINATION_HEADER},
        "per_connection_buffer_limit_bytes": per_connection_buffer_limit_bytes,
        "circuit_breakers": thresholds,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    {
                        "name": "aibrix.shift-fallbacks",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                            "mutations": {"request_mutations": shifts},
                        },
                    },
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
                        },
                    },
                ],
            }
        },
    }
    gateway = {
        "name": "aibrix-gateway",
        "type": "STRICT_DNS",
        # One ext_proc stream per request, each on its own HTTP/2 stream: round robin spreads
        # them evenly over the workers' ports (every replica's, through the headless Service).
        "lb_policy": "ROUND_ROBIN",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": _duration(connect_timeout_s),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "aibrix-gateway",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket(ext_proc_host, port)}} for port in ports
                    ]
                }
            ],
        },
        "circuit_breakers": thresholds,
    }
    return {
        "admin": {"address": _socket(admin_address, admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "inference",
                    "address": _socket(listener_address, listener_port),
                    "per_connection_buffer_limit_bytes": per_connection_buffer_limit_bytes,
                    "filter_chains": [{"filters": [connection_manager]}],
                }
            ],
            "clusters": [engines, gateway],
        },
    }
