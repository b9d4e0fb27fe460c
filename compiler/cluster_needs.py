"""What a compiled stack needs from its cluster, read off the compiled manifests alone.

``prerequisites`` (what to install first) and ``preflight`` (is it there) both start here.
They read the objects, not the plan, so they stay true whatever the plan decides: a kind
from a non-built-in API group needs its CRD; a container asking for an extended resource
(``nvidia.com/gpu``) needs nodes that offer it; a pod naming a Secret or a RuntimeClass
needs those to exist. Pure: no I/O, and no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from .manifest import Manifest

__all__ = ["BUILT_IN_GROUPS", "ClusterNeeds", "CustomResource", "GpuWorkload", "SecretUse", "cluster_needs", "plural"]

#: API groups every conformant cluster serves (no CRD, no operator). Anything else needs one.
BUILT_IN_GROUPS: frozenset[str] = frozenset(
    {
        "",
        "apps",
        "batch",
        "policy",
        "autoscaling",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "certificates.k8s.io",
    }
)
_INSTANCE = "app.kubernetes.io/instance"
_CORE_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage", "pods"})


@dataclass(frozen=True, order=True)
class CustomResource:
    """A kind the stack uses that a CRD must define: ``rayclusters.ray.io`` serving ``v1``."""

    group: str
    version: str
    kind: str

    @property
    def plural(self) -> str:
        return plural(self.kind)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


@dataclass(frozen=True, order=True)
class GpuWorkload:
    """Pods of one workload that ask for an extended resource (a GPU pool's placement).

    ``pods`` is how many such pods must run at the workload's minimum scale, each asking for
    ``per_pod`` of ``resource`` on a node matching ``node_selector``.
    """

    namespace: str
    kind: str
    name: str
    resource: str
    per_pod: int
    pods: int
    node_selector: tuple[tuple[str, str], ...]


@dataclass(frozen=True, order=True)
class SecretUse:
    namespace: str
    name: str
    used_by: str  # "Deployment/llama-3-8b"


@dataclass(frozen=True)
class ClusterNeeds:
    stack_name: str  # the app.kubernetes.io/instance label every object carries
    custom_resources: tuple[CustomResource, ...]
    gpu_workloads: tuple[GpuWorkload, ...]
    secrets: tuple[SecretUse, ...]
    runtime_classes: tuple[str, ...]
    gateway_classes: tuple[str, ...]
    namespaces: tuple[str, ...]
    created_namespaces: tuple[str, ...]  # Namespace objects in the output (createNamespace)


def plural(kind: str) -> str:
    """The resource name Kubernetes derives for a kind (``BackendTrafficPolicy`` -> ``backendtrafficpolicies``)."""
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    return lower + "s"


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def pod_templates(body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], int]]:
    """Each pod spec of an object with how many pods of it one instance of the object runs."""
    spec = body.get("spec") or {}
    if body["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield spec["template"]["spec"], 1
    elif body["kind"] == "RayCluster":
        yield spec["headGroupSpec"]["template"]["spec"], 1
        for group in spec.get("workerGroupSpecs", []):
            yield group["template"]["spec"], int(group.get("minReplicas", group.get("replicas", 0)))


def _containers(pod: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _extended(pod: dict[str, Any]) -> dict[str, int]:
    """Extended resources one pod asks for (limits, which the scheduler also counts as requests)."""
    wanted: dict[str, int] = {}
    for container in pod.get("containers", []):
        resources = container.get("resources") or {}
        for source in (resources.get("requests") or {}, resources.get("limits") or {}):
            for name, amount in source.items():
                if name in _CORE_RESOURCES or name.startswith("hugepages-") or "/" not in name:
                    continue
                wanted[name] = max(wanted.get(name, 0), int(amount))
    return wanted


def _secret_names(pod: dict[str, Any]) -> set[str]:
    names = {ref["name"] for ref in pod.get("imagePullSecrets", [])}
    for container in _containers(pod):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def _min_replicas(manifests: list[Manifest]) -> dict[tuple[str, str, str], int]:
    """(namespace, kind, name) -> the minimum replicas an autoscaler keeps (HPA, KEDA, aibrix-scaler)."""
    floors: dict[tuple[str, str, str], int] = {}
    for m in manifests:
        spec = m.body.get("spec") or {}
        if m.kind == "ConfigMap" and m.component == "autoscaler" and "scaler.yaml" in m.body.get("data", {}):
            for target in (yaml.safe_load(m.body["data"]["scaler.yaml"]) or {}).get("targets", []):
                ref = target["scaleTargetRef"]
                key = (ref.get("namespace", m.namespace), ref.get("kind", "Deployment"), ref["name"])
                floors[key] = int(target.get("minReplicas", 1))
        elif m.kind == "HorizontalPodAutoscaler":
            ref = spec["scaleTargetRef"]
            floors[(m.namespace, ref["kind"], ref["name"])] = int(spec.get("minReplicas", 1))
        elif m.kind == "ScaledObject":
            ref = spec["scaleTargetRef"]
            floors[(m.namespace, ref.get("kind", "Deployment"), ref["name"])] = int(spec.get("minReplicaCount", 0))
    return floors


def _merged(gpus: list[GpuWorkload]) -> tuple[GpuWorkload, ...]:
    """One entry per workload, resource, pod size and selector (a RayCluster's head and workers)."""
    pods: dict[GpuWorkload, int] = {}
    for g in gpus:
        key = GpuWorkload(g.namespace, g.kind, g.name, g.resource, g.per_pod, 0, g.node_selector)
        pods[key] = pods.get(key, 0) + g.pods
    return tuple(
        sorted(GpuWorkload(k.namespace, k.kind, k.name, k.resource, k.per_pod, n, k.node_selector) for k, n in pods.items())
    )


def cluster_needs(manifests: list[Manifest]) -> ClusterNeeds:
    """Everything the cluster must provide for ``manifests`` to sync and schedule."""
    resources: set[CustomResource] = set()
    gpus: list[GpuWorkload] = []
    secrets: set[SecretUse] = set()
    runtime_classes: set[str] = set()
    gateway_classes: set[str] = set()
    namespaces: set[str] = set()
    created: set[str] = set()
    floors = _min_replicas(manifests)
    for m in manifests:
        group, version = _split(m.body["apiVersion"])
        if group not in BUILT_IN_GROUPS and m.kind != "Kustomization":
            resources.add(CustomResource(group, version, m.kind))
        if m.kind == "Gateway" and group == "gateway.networking.k8s.io":
            gateway_classes.add(m.body["spec"]["gatewayClassName"])
        if m.kind == "Namespace":
            created.add(m.name)
        elif m.namespace:
            namespaces.add(m.namespace)
        replicas = m.body.get("spec", {}).get("replicas")
        instances = int(replicas) if replicas is not None else floors.get((m.namespace, m.kind, m.name), 1)
        for pod, per_instance in pod_templates(m.body):
            if pod.get("runtimeClassName"):
                runtime_classes.add(pod["runtimeClassName"])
            for secret in _secret_names(pod):
                secrets.add(SecretUse(m.namespace, secret, f"{m.kind}/{m.name}"))
            for resource, amount in sorted(_extended(pod).items()):
                selector = tuple(sorted((pod.get("nodeSelector") or {}).items()))
                gpus.append(GpuWorkload(m.namespace, m.kind, m.name, resource, amount, instances * per_instance, selector))
    stacks = sorted({str(m.body["metadata"].get("labels", {}).get(_INSTANCE, "")) for m in manifests} - {""})
    return ClusterNeeds(
        stack_name=", ".join(stacks) or "(unnamed)",
        custom_resources=tuple(sorted(resources)),
        gpu_workloads=_merged(gpus),
        secrets=tuple(sorted(secrets)),
        runtime_classes=tuple(sorted(runtime_classes)),
        gateway_classes=tuple(sorted(gateway_classes)),
        namespaces=tuple(sorted(namespaces)),
        created_namespaces=tuple(sorted(created)),
    )
