"""Errors the gateway answers itself, as OpenAI-style JSON bodies.

Every refusal (unknown model, no ready endpoint, bad key, over limit, malformed body) is a
:class:`GatewayError` carrying the HTTP status, the OpenAI ``type`` and ``code`` and a message
that says what was wrong and what was expected. The ext_proc server turns it into an Envoy
immediate response; nothing else formats error bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = [
    "GatewayError",
    "bad_request",
    "internal_error",
    "request_too_large",
    "model_not_found",
    "no_endpoint",
    "unauthorized",
    "rate_limited",
    "over_capacity",
    "cold_start_timeout",
]


@dataclass(frozen=True)
class GatewayError(Exception):
    """A request the gateway refuses; ``body()`` is the JSON sent to the client."""

    status: int
    message: str
    error_type: str
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # a machine-readable detail (the limit for 429s: "rpm" or "tpm")

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> bytes:
        payload = {"error": {"message": self.message, "type": self.error_type, "param": None, "code": self.code}}
        return json.dumps(payload).encode("utf-8")


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", "invalid_request")


def request_too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(
        413, f"The request body has {size} bytes; this gateway accepts at most {limit} "
        "(send a shorter prompt or raise gateway.maxRequestBodyBytes)", "invalid_request_error", "request_too_large")


def internal_error(what: str) -> GatewayError:
    return GatewayError(500, f"The gateway failed while {what}; this is a bug, the log has the details",
                        "server_error", "internal_error")


def model_not_found(model: str, known: list[str]) -> GatewayError:
    choices = ", ".join(sorted(known)) or "(none)"
    return GatewayError(
        404, f'The model "{model}" does not exist; this gateway serves: {choices}', "invalid_request_error", "model_not_found"
    )


def no_endpoint(model: str, reason: str) -> GatewayError:
    return GatewayError(503, f'No ready endpoint for "{model}": {reason}', "service_unavailable", "no_ready_endpoint")


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, "authentication_error", "invalid_api_key")


def rate_limited(message: str, retry_after_s: float, limit: str) -> GatewayError:
    seconds = max(1, int(-(-retry_after_s // 1)))  # whole seconds, rounded up, at least 1
    return GatewayError(
        429, f"{message}; retry after {seconds} s", "rate_limit_error", "rate_limit_exceeded",
        {"retry-after": str(seconds)}, reason=limit,
    )


def _whole_seconds(value: float) -> int:
    return max(1, int(-(-value // 1)))  # rounded up, at least 1


def over_capacity(model: str, why: str, retry_after_s: float, reason: str) -> GatewayError:
    """Flow control shed the request: every engine stayed full, or a higher priority needed the place."""
    seconds = _whole_seconds(retry_after_s)
    return GatewayError(
        429, f'"{model}" is over capacity: {why}; retry after {seconds} s', "rate_limit_error", "over_capacity",
        {"retry-after": str(seconds)}, reason=reason,
    )


def cold_start_timeout(model: str, waited_s: float, retry_after_s: float) -> GatewayError:
    """A held request waited its queue timeout and the model still had no ready engine."""
    seconds = _whole_seconds(retry_after_s)
    return GatewayError(
        503, f'No engine of "{model}" became ready within {waited_s:.0f} s (the model is starting from zero '
        f"replicas or its pods are not ready); retry after {seconds} s", "service_unavailable", "cold_start_timeout",
        {"retry-after": str(seconds)}, reason="cold_start_timeout",
    )
