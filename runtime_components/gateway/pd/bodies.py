"""The request bodies of a prefill/decode pair, per engine protocol (pure functions).

vLLM (``transfer: nixl`` or ``kv-pool``): the gateway calls the prefill pod itself with the
client's body changed to produce one token, non-streaming; with NIXL it asks for a remote
decode (``kv_transfer_params``, vLLM's NixlConnector shape) and hands the parameters the
prefill pod answers with to the decode pod. With the project's KV pool the prefill pod
writes the prompt's blocks to the pool and the decode pod finds them there by prefix hash,
so neither call carries parameters.

SGLang (``transfer: mooncake``, or ``nixl`` on an SGLang model): the router sends the same
request to a prefill and a decode server at once, both naming the prefill server's bootstrap
endpoint and one shared ``bootstrap_room`` (SGLang's mini load balancer and sgl-router do the
same); the decode server's answer is the client's.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CLIENT_TRANSFER_FIELDS",
    "NIXL_PREFILL_PARAMS",
    "decode_body",
    "dumps",
    "sglang_bodies",
    "without_client_transfer",
    "vllm_prefill_body",
]

#: What a router adds to the prefill call for vLLM's NixlConnector: "this request's decode
#: is remote" (the same shape ``engine_sim.pd.prefill_request_params`` answers to).
NIXL_PREFILL_PARAMS: dict[str, Any] = {
    "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
    "remote_block_ids": None, "remote_host": None, "remote_port": None,
}

#: Fields that tell an engine where to fetch KV from: only the gateway may set them (a
#: client's would point a decode pod at any host).
CLIENT_TRANSFER_FIELDS = ("kv_transfer_params", "bootstrap_host", "bootstrap_port", "bootstrap_room")


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def without_client_transfer(document: dict[str, Any]) -> dict[str, Any] | None:
    """``document`` without the transfer fields a client sent; None when it sent none."""
    if not any(key in document for key in CLIENT_TRANSFER_FIELDS):
        return None
    return {k: v for k, v in document.items() if k not in CLIENT_TRANSFER_FIELDS}


def vllm_prefill_body(document: dict[str, Any], *, nixl: bool) -> dict[str, Any]:
    """The prefill call: the prompt and one output token, answered whole (the gateway reads it)."""
    out = {k: v for k, v in document.items() if k not in ("stream_options", "min_tokens", *CLIENT_TRANSFER_FIELDS)}
    out["max_tokens"] = 1
    if "max_completion_tokens" in out:
        out["max_completion_tokens"] = 1
    out["stream"] = False
    if nixl:
        out["kv_transfer_params"] = dict(NIXL_PREFILL_PARAMS)
    return out


def decode_body(document: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The client's request for the decode pod, naming where its prompt's KV is."""
    out = {k: v for k, v in document.items() if k not in CLIENT_TRANSFER_FIELDS}
    out["kv_transfer_params"] = params
    return out


def sglang_bodies(document: dict[str, Any], host: str, port: int, room: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prefill body, decode body) of one SGLang pair: the same request, the same bootstrap
    room. The prefill answer is only drained, so it is asked for whole."""
    pair = {k: v for k, v in document.items() if k not in CLIENT_TRANSFER_FIELDS}
    pair.update(bootstrap_host=host, bootstrap_port=port, bootstrap_room=room)
    prefill = {k: v for k, v in pair.items() if k != "stream_options"}
    prefill["stream"] = False
    return prefill, pair
