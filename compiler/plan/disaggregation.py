"""Prefill/decode disaggregation: what each role's engine pods get, and how the pairs meet.

A disaggregated model runs two roles (``models[].disaggregation``), each as its own
workloads (one per pool of the role, labelled ``model.aibrix.ai/role``). Per transfer:

- vLLM ``nixl``: ``--kv-transfer-config {"kv_connector":"NixlConnector","kv_role":"kv_both"}``
  on both roles. vLLM's NixlConnector usage guide (docs.vllm.ai, features/nixl_connector_usage)
  starts the prefiller and the decoder with that same config: the connector is symmetric and
  the request's ``kv_transfer_params`` decide who sends; the decode pod pulls the blocks. Each
  pod's handshake listens on ``VLLM_NIXL_SIDE_CHANNEL_PORT`` (the guide: required on both
  sides, tensor-parallel rank r uses base + r) at ``VLLM_NIXL_SIDE_CHANNEL_HOST``, here the
  pod's IP from the downward API, so the address the prefill returns is reachable;
- vLLM ``kv-pool``: the project's pool connector, ``kv_role`` ``kv_producer`` on prefill pods
  (they write the prompt's blocks) and ``kv_consumer`` on decode pods (they read them);
- SGLang: ``--disaggregation-mode prefill|decode`` and ``--disaggregation-transfer-backend
  mooncake|nixl``; prefill pods also ``--disaggregation-bootstrap-port`` (SGLang's default
  8998), where decode pods fetch the prefill's transfer details.

The decode pods are the model's serving pods (its Service and the gateway's ``selector``:
they also decode short prompts in place); the gateway learns the prefill pods' selector and
the transfer from :class:`DisaggregationPlan`. Decode pods may reach prefill pods on the
side-channel or bootstrap port (:func:`pd_link`).
"""

from __future__ import annotations

import json
from typing import Any

from aibrix_spec.catalog import replica_bandwidth_gbs

from ..defaults import ResolvedModel, ResolvedRole, ResolvedStack
from .kv_connector import kv_connector_args
from .names import NIXL_PORT_NAME, NIXL_SIDE_CHANNEL_PORT, ROLE_LABEL, SGLANG_BOOTSTRAP_PORT, SGLANG_BOOTSTRAP_PORT_NAME
from .types import DisaggregationPlan, Labels, PdLink, Peer, RolePlan

__all__ = ["NIXL_TRANSFER_CONFIG", "pairing", "pd_link", "role_args", "role_pod", "role_selector", "short_on_prefill_default"]

#: vLLM's NixlConnector, the same on both roles (see the module docstring).
NIXL_TRANSFER_CONFIG = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, separators=(",", ":"))
#: The pool connector's role per pod role: prefill pods write blocks, decode pods read them.
_POOL_KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}


def role_selector(model_selector: Labels, role: str) -> Labels:
    """The model's selector narrowed to one role's pods."""
    return tuple(sorted((*model_selector, (ROLE_LABEL, role))))


def role_args(stack: ResolvedStack, m: ResolvedModel, role: ResolvedRole) -> dict[str, str | int | float | bool]:
    """The role's engine flags (camelCase keys, as engine.args)."""
    pd = m.spec.disaggregation
    assert pd is not None  # only disaggregated models have roles
    if m.spec.engine.type == "sglang":
        args: dict[str, str | int | float | bool] = {
            "disaggregationMode": role.role,
            "disaggregationTransferBackend": pd.transfer,
        }
        if role.role == "prefill":
            args["disaggregationBootstrapPort"] = SGLANG_BOOTSTRAP_PORT
        return args
    if pd.transfer == "kv-pool":
        return kv_connector_args(stack, _POOL_KV_ROLE[role.role])
    return {"kvTransferConfig": NIXL_TRANSFER_CONFIG}


def _nixl_ports(tensor: int) -> tuple[tuple[str, int], ...]:
    """One side channel per tensor-parallel rank of the pod."""
    return tuple(
        (NIXL_PORT_NAME if r == 0 else f"{NIXL_PORT_NAME}-{r}", NIXL_SIDE_CHANNEL_PORT + r) for r in range(tensor)
    )


def role_pod(m: ResolvedModel, role: ResolvedRole) -> dict[str, Any]:
    """The role's pod additions, as :class:`WorkloadPlan` fields: environment, pod-IP
    variables and named container ports."""
    pd = m.spec.disaggregation
    assert pd is not None
    if m.spec.engine.type == "vllm" and pd.transfer == "nixl":
        return {
            "env": (("VLLM_NIXL_SIDE_CHANNEL_PORT", str(NIXL_SIDE_CHANNEL_PORT)),),
            "pod_ip_env": ("VLLM_NIXL_SIDE_CHANNEL_HOST",),
            "ports": _nixl_ports(role.parallelism.tensor),
        }
    if m.spec.engine.type == "sglang" and role.role == "prefill":
        return {"ports": ((SGLANG_BOOTSTRAP_PORT_NAME, SGLANG_BOOTSTRAP_PORT),)}
    return {}


def short_on_prefill_default(stack: ResolvedStack, m: ResolvedModel) -> bool:
    """Whether short prompts may run on prefill pods when the spec leaves it out: only where a
    prefill pod decodes at least as fast as every decode pod. Otherwise a short prompt moved to
    an idle prefill pod streams slower than on a busy decode pod (measured: a TP2 prefill pool
    next to a TP8 decode pod gave short prompts 1.39x the e2e latency, against 0.84x kept on
    the decode pod; benchmarks.pd). GPUs outside the catalogue compare by tensor parallelism
    within one product only."""
    if m.spec.engine.type != "vllm":
        return False
    prefill, decode = m.roles
    names = prefill.pools + decode.pools
    pools = {p.name: p for p in stack.pools}
    gpus = {name: key for name in names if (key := pools[name].accelerator) is not None}
    if len(gpus) < len(set(names)):
        return len({pools[name].product for name in names}) == 1 and prefill.parallelism.tensor >= decode.parallelism.tensor

    def speeds(role: ResolvedRole) -> list[float]:
        return [replica_bandwidth_gbs(gpus[name], role.parallelism.tensor) for name in role.pools]

    return min(speeds(prefill)) >= max(speeds(decode))


def pairing(stack: ResolvedStack, m: ResolvedModel, roles: tuple[RolePlan, ...]) -> DisaggregationPlan:
    """What the gateway is told, and the port decode pods reach prefill pods on."""
    pd = m.spec.disaggregation
    assert pd is not None
    prefill, decode = roles
    port: int | None = None
    end: int | None = None
    if m.spec.engine.type == "sglang":
        port = SGLANG_BOOTSTRAP_PORT
    elif pd.transfer == "nixl":
        tensor = m.roles[0].parallelism.tensor
        port, end = NIXL_SIDE_CHANNEL_PORT, (NIXL_SIDE_CHANNEL_PORT + tensor - 1 if tensor > 1 else None)
    return DisaggregationPlan(
        transfer=pd.transfer,
        min_prompt_tokens=pd.min_prompt_tokens,
        prefill_selector=prefill.selector,
        decode_selector=decode.selector,
        prefill_port=m.spec.engine.port,
        transfer_port=port,
        transfer_port_end=end,
        bootstrap_port=SGLANG_BOOTSTRAP_PORT if m.spec.engine.type == "sglang" else None,
        short_prompts_on_prefill_pods=(
            pd.short_prompts_on_prefill_pods
            if pd.short_prompts_on_prefill_pods is not None
            else short_on_prefill_default(stack, m)
        ),
    )


def pd_link(name: str, plan: DisaggregationPlan) -> PdLink | None:
    """Decode pods -> prefill pods on the transfer's port (none for kv-pool: both sides talk to
    the pool, which admits every engine)."""
    if plan.transfer_port is None:
        return None
    decode: Peer = {"podSelector": {"matchLabels": dict(plan.decode_selector)}}
    return PdLink(f"{name}-pd-transfer", plan.prefill_selector, decode, plan.transfer_port, plan.transfer_port_end)
