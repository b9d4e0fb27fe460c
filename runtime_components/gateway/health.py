"""The standard gRPC health service (``grpc.health.v1.Health/Check``) without extra packages.

Envoy and Kubernetes probe the ext_proc port with it. The two messages are tiny, so they are
encoded by hand (protobuf wire format): the request's field 1 is the service name (string);
the response's field 1 is the status enum (1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

__all__ = ["CHECK_PATH", "check_answer", "health_handler", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]

SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3
CHECK_PATH = "/grpc.health.v1.Health/Check"
_KNOWN_SERVICES = ("", "envoy.service.ext_proc.v3.ExternalProcessor")


def _service_name(data: bytes) -> str:
    """Field 1 (wire type 2) of HealthCheckRequest; '' when absent."""
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        if key == 0x0A:  # field 1, length-delimited
            length, shift = 0, 0
            while True:
                byte = data[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            return data[i : i + length].decode("utf-8", "replace")
        return ""
    return ""


def check_answer(request: bytes, serving: bool) -> bytes:
    """The HealthCheckResponse to a HealthCheckRequest, both serialized."""
    if _service_name(request) not in _KNOWN_SERVICES:
        status = SERVICE_UNKNOWN
    else:
        status = SERVING if serving else NOT_SERVING
    return bytes([0x08, status])


def health_handler(is_serving: Callable[[], bool]) -> grpc.GenericRpcHandler:
    """A grpcio handler answering Check for the ext_proc service (and '' for the whole server)."""

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return check_answer(request, is_serving())

    def identity(message: bytes) -> bytes:
        return message

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=identity, response_serializer=identity)},
    )
