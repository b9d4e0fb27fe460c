"""Renderer family "core": the objects of every model, and single-node workloads.

Per model: a ServiceAccount (no API token mounted) and a ClusterIP Service on the engine
port selecting the model's serving pods; per single-node workload (model x pool) a
Deployment whose pods come from :func:`.engine_pod.engine_pod` and a PodDisruptionBudget
(``maxUnavailable: 1``; an unready engine never blocks a drain where the version allows).
Plus the Namespace when ``spec.createNamespace`` is set, and the stack's network baseline
(peers decided by the plan's NetworkPlan): ``aibrix-default-deny`` selects every pod of the
stack and admits nothing, and ``aibrix-engines`` admits exactly the engines' callers on their
API ports. Deployment choices:

- rolling updates surge one pod and never drop below the count (``maxSurge: 1,
  maxUnavailable: 0``): a model keeps serving while it rolls;
- an autoscaled workload omits ``replicas`` so GitOps never fights the autoscaler.

Labels common to every object (instance, part-of, managed-by, component) are added by
the labels transformer; here only selector labels and model labels are set.
"""

from __future__ import annotations

from typing import Any

from ..manifest import Manifest
from ..plan import Labels, ModelPlan, Plan, WorkloadPlan
from ..plan.names import ENGINE, ROLE_LABEL
from .component_parts import network_policy, pdb
from .engine_pod import engine_pod

__all__ = ["COMPONENT", "render", "workload_metadata"]

COMPONENT = ENGINE


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": dict(sorted(labels.items()))}


def workload_metadata(model: ModelPlan, workload: WorkloadPlan) -> dict[str, Any]:
    """Metadata of a workload's objects: the model's labels plus its pool (and role)."""
    return _meta(workload.name, {**dict(model.labels), **dict(workload.labels)})


def _service_account(model: ModelPlan) -> Manifest:
    body = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(model.name, dict(model.labels)),
        "automountServiceAccountToken": False,
    }
    return Manifest(COMPONENT, body)


def _services(model: ModelPlan) -> list[Manifest]:
    """The model's Service on its serving pods; a disaggregated model's selects the decode pods
    and a second one, ``<model>-prefill``, its prefill pods (each labelled with its role, so a
    monitor of one never selects the other)."""
    pd = model.disaggregation
    if pd is None:
        services: list[tuple[str, Labels, dict[str, str]]] = [(model.name, model.selector, {})]
    else:
        services = [(model.name, pd.decode_selector, {ROLE_LABEL: "decode"}),
                    (f"{model.name}-prefill", pd.prefill_selector, {ROLE_LABEL: "prefill"})]
    return [
        Manifest(
            COMPONENT,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(name, {**dict(model.labels), **role}),
                "spec": {
                    "type": "ClusterIP",
                    "selector": dict(selector),
                    "ports": [{"name": "http", "port": model.port, "targetPort": "http", "protocol": "TCP"}],
                },
            },
        )
        for name, selector, role in services
    ]


def _deployment(plan: Plan, model: ModelPlan, workload: WorkloadPlan) -> Manifest:
    selector = dict(workload.selector)
    pod_labels = dict(sorted({**selector, **dict(model.labels)}.items()))
    spec: dict[str, Any] = {}
    if workload.replicas is not None:
        spec["replicas"] = workload.replicas
    spec["selector"] = {"matchLabels": selector}
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spec["template"] = {"metadata": {"labels": pod_labels}, "spec": engine_pod(plan, model, workload, "server")}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": workload_metadata(model, workload), "spec": spec}
    return Manifest(COMPONENT, body)


def _network_policies(plan: Plan) -> list[Manifest]:
    stack = dict(plan.network.stack_selector)
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "aibrix-default-deny", "labels": {"app.kubernetes.io/name": "aibrix-default-deny"}},
        "spec": {"podSelector": {"matchLabels": stack}, "policyTypes": ["Ingress"]},
    }
    ports = [{"protocol": "TCP", "port": p} for p in sorted({m.port for m in plan.models})]
    rules = [{"from": list(plan.network.to_engines), "ports": ports}]
    events = sorted({m.kv_events_port for m in plan.models if m.kv_events_port is not None})
    if events and plan.network.to_engine_kv_events:
        rules.append({"from": list(plan.network.to_engine_kv_events), "ports": [{"protocol": "TCP", "port": p} for p in events]})
    engines = network_policy("aibrix-engines", dict(plan.network.engine_selector), rules)
    links = [
        network_policy(link.name, dict(link.prefill_selector), [{"from": [link.decode_peer], "ports": [
            {"protocol": "TCP", "port": link.port, **({"endPort": link.end_port} if link.end_port is not None else {})}
        ]}])
        for link in plan.network.pd_links
    ]
    return [Manifest("network", deny), Manifest(COMPONENT, engines), *(Manifest(COMPONENT, link) for link in links)]


def render(plan: Plan) -> list[Manifest]:
    """The namespace (optional), network baseline, every model's account and Service, single-node workloads."""
    out: list[Manifest] = []
    if plan.create_namespace:
        out.append(Manifest("namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plan.namespace}}))
    out += _network_policies(plan)
    for model in plan.models:
        out += [_service_account(model), *_services(model)]
        for workload in model.workloads:
            if workload.multi_node:
                continue  # the kuberay family renders these as RayClusters
            budget = pdb(plan, workload_metadata(model, workload), dict(workload.selector), evict_unhealthy=True)
            out += [_deployment(plan, model, workload), Manifest(COMPONENT, budget)]
    return out
