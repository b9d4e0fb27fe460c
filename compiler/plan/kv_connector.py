"""The KV-cache pool's vLLM connector flags, shared by the pool's prefix cache
(``kvCache.enabled``) and the ``kv-pool`` transfer of prefill/decode disaggregation."""

from __future__ import annotations

import json

from ..defaults import ResolvedStack
from .names import KV_CONNECTOR, KV_POOL, KV_POOL_PORT

__all__ = ["kv_connector_args"]


def kv_connector_args(stack: ResolvedStack, kv_role: str) -> dict[str, str | int | float | bool]:
    """vLLM flags that load the pool's connector. Members come from the pool's headless
    Service (re-resolved by the client); every engine sharing the pool uses the pool's
    block size, so equal prefixes give equal keys. ``kv_role``: kv_both for a shared prefix
    cache; kv_producer / kv_consumer for the prefill / decode pods of a disaggregated model."""
    transfer = {
        "kv_connector": KV_CONNECTOR[0],
        "kv_connector_module_path": KV_CONNECTOR[1],
        "kv_role": kv_role,
        "kv_connector_extra_config": {"dns_name": f"{KV_POOL}.{stack.namespace}.svc", "port": KV_POOL_PORT},
    }
    return {
        "blockSize": stack.kv_cache.block_size_tokens,
        "kvTransferConfig": json.dumps(transfer, sort_keys=True, separators=(",", ":")),
    }
