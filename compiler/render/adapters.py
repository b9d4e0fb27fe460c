"""Renderer family "adapters": what the LoRA sidecar of a model with adapters needs besides
its container (which :mod:`.pod_features` adds to every serving engine pod).

For each model with ``adapters`` (the engine's ``--enable-lora --max-loras N --max-lora-rank R``
flags come from :mod:`compiler.engine_args`; N = ``lora.maxLoras``, else min(adapters, 8)):

- ConfigMap ``<model>-adapters``, key ``config.yaml``: a validated
  :class:`aibrix_spec.components.sidecar.SidecarConfig` (served name, maxLoras, each adapter's
  uri and replicas as the plan decided, pods ``{kind: kubernetes, labelSelector: <the model's
  pod selector>}``);
- Role + RoleBinding ``<model>-sidecar`` granting ``pods: list, watch`` in the namespace to
  the model's ServiceAccount (a pod has one identity; the core family creates it).
"""

from __future__ import annotations

from aibrix_spec.components.sidecar import PodSource, SidecarConfig

from ..manifest import Manifest
from ..plan import AdapterPlan, ModelPlan, Plan
from ..plan.names import ENGINE
from .component_parts import config_map, dump_config, rbac
from .pod_features import ADAPTER_DIR

__all__ = ["render", "sidecar_config"]


def sidecar_config(model: ModelPlan, sidecar: AdapterPlan) -> SidecarConfig:
    """The sidecar's config for one model."""
    return SidecarConfig(
        model=model.served_name,
        max_loras=sidecar.max_loras,
        adapters=list(sidecar.adapters),
        pods=PodSource(kind="kubernetes", label_selector=",".join(f"{k}={v}" for k, v in model.selector)),
        artifact_dir=ADAPTER_DIR,
    )


def render(plan: Plan) -> list[Manifest]:
    """The sidecar ConfigMap and pod-reading RBAC of every model with adapters."""
    out: list[Manifest] = []
    for model in plan.models:
        if model.adapters is None:
            continue
        labels = {"app.kubernetes.io/name": model.name, "model.aibrix.ai/name": model.name}
        data = {"config.yaml": dump_config(sidecar_config(model, model.adapters))}
        out.append(Manifest(ENGINE, config_map(model.adapters.config_map, data, labels=labels)))
        rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
        out += [Manifest(ENGINE, body) for body in rbac(plan, model.adapters.rbac_name, rules, account=model.name, labels=labels)]
    return out
