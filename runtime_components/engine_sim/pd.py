"""Prefill/decode roles of a simulated engine: the transfer's cost and its wire parameters.

An engine runs in one role (``--pd-role``):

- ``both``: an ordinary engine (the default);
- ``prefill``: computes the prompt, samples one token and answers with the
  ``kv_transfer_params`` a decode engine needs to pull its KV cache (vLLM's NixlConnector
  shape: ``do_remote_prefill``, ``remote_engine_id``, ``remote_block_ids``,
  ``remote_host``, ``remote_port``), plus ``aibrix_prompt_tokens``, how many prompt tokens
  the blocks cover;
- ``decode``: a request carrying those parameters waits for the transfer
  (:func:`transfer_seconds`: the prompt's KV bytes over the link, plus a fixed latency) and
  then runs with its prompt's KV present (``SimRequest.kv_transferred_tokens``).

The transfer is asynchronous, as NIXL's is: the decode engine keeps stepping its other
requests while one request's blocks arrive (vLLM holds it in WAITING_FOR_REMOTE_KVS).
The HTTP server and the discrete-event simulation share this model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "DEFAULT_LINK_GBS",
    "DEFAULT_TRANSFER_LATENCY_S",
    "PD_ROLES",
    "PdRole",
    "decode_transfer",
    "prefill_request_params",
    "prefill_response_params",
    "transfer_seconds",
]

PdRole = Literal["both", "prefill", "decode"]
PD_ROLES: tuple[PdRole, ...] = ("both", "prefill", "decode")

#: GB/s of one prefill-to-decode KV link: a 400 Gb/s RDMA NIC (NIXL over UCX) is 50 GB/s raw;
#: 25 GB/s is what such transfers sustain in practice. An assumption: ``--pd-link-gbs`` sets it.
DEFAULT_LINK_GBS = 25.0
#: fixed cost of one transfer (handshake, descriptor exchange, notification)
DEFAULT_TRANSFER_LATENCY_S = 0.002


def transfer_seconds(tokens: int, kv_bytes_per_token: int, link_gbs: float = DEFAULT_LINK_GBS,
                     latency_s: float = DEFAULT_TRANSFER_LATENCY_S) -> float:
    """Seconds to move ``tokens`` tokens of KV cache over one link."""
    if tokens <= 0:
        return 0.0
    return latency_s + tokens * kv_bytes_per_token / (link_gbs * 1e9)


def prefill_request_params() -> dict[str, Any]:
    """What a router adds to the prefill call (vLLM's NixlConnector: "this request's decode is remote")."""
    return {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
            "remote_block_ids": None, "remote_host": None, "remote_port": None}


def prefill_response_params(engine_id: str, host: str, port: int, block_ids: list[int],
                            prompt_tokens: int) -> dict[str, Any]:
    """What a prefill engine answers: where the decode engine pulls the blocks from."""
    return {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": engine_id,
            "remote_block_ids": block_ids, "remote_host": host, "remote_port": port,
            "aibrix_prompt_tokens": prompt_tokens}


def decode_transfer(params: Mapping[str, Any] | None, prompt_tokens: int) -> int:
    """Prompt tokens whose KV a decode engine receives for a request carrying ``params`` (0: none).

    Only parameters that name a remote prefill count; the prefill's own prompt length bounds it
    (a client cannot claim more KV than was computed)."""
    if not params or not params.get("do_remote_prefill"):
        return 0
    sent = params.get("aibrix_prompt_tokens")
    if not isinstance(sent, int) or isinstance(sent, bool) or sent < 0:
        return 0
    return min(sent, prompt_tokens)
