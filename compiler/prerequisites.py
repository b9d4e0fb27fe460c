"""``aibrix-compile prerequisites``: the operators a stack needs, as ArgoCD Applications.

Read off the compiled manifests (:mod:`compiler.cluster_needs`), never the stack's fields,
so the list is exactly what the output uses: a ``RayCluster`` needs the KubeRay operator;
``Gateway``/``HTTPRoute``/``BackendTrafficPolicy`` need Envoy Gateway (its chart also
installs the Gateway API CRDs); ``InferencePool`` needs the Gateway API Inference Extension
CRDs; ``ScaledObject`` needs KEDA; ``ServiceMonitor``/``PodMonitor``/``PrometheusRule`` need
the Prometheus Operator CRDs. GPUs and RuntimeClasses are the cluster's own business (the
driver stack differs per cloud), so they come as notes, not Applications.

Versions are pinned to the releases whose CRDs the compiler's output is validated against.
Sync waves: CRD-only Applications -2, operators (whose charts carry their CRDs) -1, so an
app-of-apps that also holds the stack (wave 0) applies CRDs before anything that uses them.
The Applications carry no resources finalizer: deleting one must never delete CRDs and
with them every custom resource in the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cluster_needs import ClusterNeeds
from .errors import CompilerBug
from .serialize import dump_yaml

__all__ = ["OPERATORS", "Operator", "prerequisite_applications", "prerequisite_notes", "prerequisites_stream"]

ARGOCD_NAMESPACE = "argocd"
_IN_CLUSTER = "https://kubernetes.default.svc"


@dataclass(frozen=True)
class Operator:
    """One prerequisite: an ArgoCD source and the API groups it makes the cluster serve."""

    name: str
    wave: int
    groups: frozenset[str]
    source: dict[str, Any]
    namespace: str | None  # None: cluster-scoped objects only (CRDs)
    why: str


OPERATORS: tuple[Operator, ...] = (
    Operator(
        name="prometheus-operator-crds",
        wave=-2,
        groups=frozenset({"monitoring.coreos.com"}),
        # The operator's own release, CRDs only: ServiceMonitor, PodMonitor, PrometheusRule ...
        source={
            "repoURL": "https://github.com/prometheus-operator/prometheus-operator.git",
            "targetRevision": "v0.93.0",
            "path": "example/prometheus-operator-crd",
        },
        namespace=None,
        why="ServiceMonitor, PodMonitor and PrometheusRule objects (a Prometheus must select them)",
    ),
    Operator(
        name="gateway-api-inference-extension-crds",
        wave=-2,
        groups=frozenset({"inference.networking.k8s.io"}),
        source={
            "repoURL": "https://github.com/kubernetes-sigs/gateway-api-inference-extension.git",
            "targetRevision": "v1.6.0",
            "path": "config/crd",
        },
        namespace=None,
        why="the InferencePool the HTTPRoute sends to",
    ),
    Operator(
        name="envoy-gateway",
        wave=-1,
        groups=frozenset({"gateway.networking.k8s.io", "gateway.envoyproxy.io"}),
        source={"repoURL": "docker.io/envoyproxy", "chart": "gateway-helm", "targetRevision": "v1.9.0"},
        namespace="envoy-gateway-system",
        why="the Gateway, HTTPRoute and Envoy Gateway policies (the chart carries the Gateway API CRDs)",
    ),
    Operator(
        name="keda",
        wave=-1,
        groups=frozenset({"keda.sh"}),
        source={"repoURL": "https://kedacore.github.io/charts", "chart": "keda", "targetRevision": "2.20.2"},
        namespace="keda",
        why="ScaledObjects (useKeda)",
    ),
    Operator(
        name="kuberay-operator",
        wave=-1,
        groups=frozenset({"ray.io"}),
        source={
            "repoURL": "https://ray-project.github.io/kuberay-helm/",
            "chart": "kuberay-operator",
            "targetRevision": "1.7.0",
        },
        namespace="kuberay-system",
        why="RayClusters (models spanning several nodes)",
    ),
)
_BY_GROUP = {group: op for op in OPERATORS for group in op.groups}


def _needed(needs: ClusterNeeds) -> list[Operator]:
    chosen: dict[str, Operator] = {}
    for resource in needs.custom_resources:
        operator = _BY_GROUP.get(resource.group)
        if operator is None:
            raise CompilerBug(
                "prerequisites",
                f"the output uses {resource.kind} ({resource.group}/{resource.version}), and no prerequisite "
                "provides that API group; add it to compiler/prerequisites.py OPERATORS",
            )
        chosen[operator.name] = operator
    return sorted(chosen.values(), key=lambda op: (op.wave, op.name))


def _application(op: Operator, needs: ClusterNeeds, argocd_namespace: str) -> dict[str, Any]:
    kinds = sorted({r.kind for r in needs.custom_resources if r.group in op.groups})
    destination: dict[str, Any] = {"server": _IN_CLUSTER}
    if op.namespace is not None:
        destination["namespace"] = op.namespace
    source = dict(op.source)
    if "chart" in source:
        source["helm"] = {"releaseName": op.name}
    sync_options = ["ServerSideApply=true"]  # CRDs exceed the client-side apply annotation limit
    if op.namespace is not None:
        sync_options.insert(0, "CreateNamespace=true")
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": op.name,
            "namespace": argocd_namespace,
            "labels": {"app.kubernetes.io/part-of": "aibrix-prerequisites"},
            "annotations": {
                "argocd.argoproj.io/sync-wave": str(op.wave),
                "aibrix.ai/needed-for": ", ".join(kinds),
            },
        },
        "spec": {
            "project": "default",
            "source": source,
            "destination": destination,
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": sync_options},
        },
    }


def prerequisite_applications(needs: ClusterNeeds, *, argocd_namespace: str = ARGOCD_NAMESPACE) -> list[dict[str, Any]]:
    """One Application per operator the manifests need, in sync-wave order."""
    return [_application(op, needs, argocd_namespace) for op in _needed(needs)]


def prerequisite_notes(needs: ClusterNeeds) -> list[str]:
    """What the cluster must provide that is not an Application: GPUs, RuntimeClasses, why each operator."""
    notes = [f"{op.name}: for {op.why}" for op in _needed(needs)]
    resources = sorted({g.resource for g in needs.gpu_workloads})
    for resource in resources:
        workloads = sorted({f"{g.kind}/{g.name}" for g in needs.gpu_workloads if g.resource == resource})
        labels = sorted({key for g in needs.gpu_workloads if g.resource == resource for key, _ in g.node_selector})
        notes.append(
            f"{resource}: requested by {len(workloads)} workload(s); nodes must advertise it: install the NVIDIA "
            "GPU Operator (chart gpu-operator, https://helm.ngc.nvidia.com/nvidia) or the NVIDIA device plugin "
            "(chart nvidia-device-plugin, https://nvidia.github.io/k8s-device-plugin) with GPU Feature Discovery, "
            f"which sets the node labels the pools select on ({', '.join(labels) or 'none'})"
        )
    for name in needs.runtime_classes:
        notes.append(
            f"RuntimeClass {name}: named by GPU pods (runtimeClassName); the GPU Operator creates 'nvidia', "
            "otherwise create it (node.k8s.io/v1, handler set up by the NVIDIA Container Toolkit)"
        )
    for name in needs.gateway_classes:
        notes.append(
            f"GatewayClass {name}: named by the Gateway; create it with controllerName "
            "gateway.envoyproxy.io/gatewayclass-controller once Envoy Gateway runs"
        )
    return notes


def prerequisites_stream(needs: ClusterNeeds, *, argocd_namespace: str = ARGOCD_NAMESPACE) -> str:
    """The YAML stream: a comment header with the notes, then the Applications."""
    lines = [f"# Prerequisites of InferenceStack {needs.stack_name}: sync these before the stack."]
    notes = prerequisite_notes(needs)
    lines += [f"# - {note}" for note in notes] if notes else ["# - nothing to install first"]
    header = "\n".join(lines) + "\n"
    return header + "".join(
        f"---\n{dump_yaml(app)}" for app in prerequisite_applications(needs, argocd_namespace=argocd_namespace)
    )
