"""The scaler's Kubernetes calls, through the official `kubernetes` client (sync, run in threads).

Endpoints used, and nothing else (the RBAC the compiler grants must cover exactly these):
    GET   /api/v1/namespaces/{ns}/pods?labelSelector=...                     list engine pods
    GET   /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{n}/scale  read replicas
    PATCH /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{n}/scale  merge-patch replicas
    POST  /api/v1/namespaces/{ns}/events                                    report decisions
    GET/POST/PUT /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{n}    leader election
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from aibrix_spec.components.scaler import ScaleTargetRef

__all__ = ["KubeApi", "PodEndpoint", "ScaleState", "connect"]

PORT_LABEL = "model.aibrix.ai/port"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class PodEndpoint:
    """A pod the scaler may scrape."""

    name: str
    ip: str
    port: int | None
    ready: bool


@dataclass(frozen=True)
class ScaleState:
    """The scale subresource: wanted (`spec`) and observed (`status`) replicas."""

    spec_replicas: int
    status_replicas: int


def connect(*, api_url: str | None = None, kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient for `api_url` (plain HTTP, tests and the local target), a kubeconfig file,
    or the in-cluster service account, in that order of preference."""
    if api_url is not None:
        configuration = k8s.Configuration(host=api_url.rstrip("/"))
        return k8s.ApiClient(configuration)
    if kubeconfig is not None:
        api_client: k8s.ApiClient = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return api_client
    k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


class KubeApi:
    """Async facade over the few typed calls the scaler makes."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._coordination = k8s.CoordinationV1Api(api_client)

    async def list_pods(self, namespace: str, selector: dict[str, str]) -> list[PodEndpoint]:
        """Pods matching `selector`, with their IP, their port label and readiness."""
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = await asyncio.to_thread(self._core.list_namespaced_pod, namespace, label_selector=label_selector)
        return [_endpoint(pod) for pod in pods.items]

    async def get_scale(self, ref: ScaleTargetRef) -> ScaleState:
        read = (
            self._apps.read_namespaced_deployment_scale
            if ref.kind == "Deployment"
            else self._apps.read_namespaced_stateful_set_scale
        )
        return _scale_state(await asyncio.to_thread(read, ref.name, ref.namespace))

    async def set_replicas(self, ref: ScaleTargetRef, replicas: int) -> ScaleState:
        """Merge-patch `spec.replicas` of the scale subresource."""
        patch = (
            self._apps.patch_namespaced_deployment_scale
            if ref.kind == "Deployment"
            else self._apps.patch_namespaced_stateful_set_scale
        )
        body = {"spec": {"replicas": replicas}}
        scale = await asyncio.to_thread(
            patch, ref.name, ref.namespace, body, field_manager="aibrix-scaler", _content_type=MERGE_PATCH
        )
        return _scale_state(scale)

    async def emit_event(self, ref: ScaleTargetRef, *, reason: str, message: str, warning: bool = False) -> None:
        """Record a core/v1 Event on the workload (visible in `kubectl describe`)."""
        now = dt.datetime.now(dt.UTC)
        event = k8s.CoreV1Event.from_dict(
            {
                "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
                "involvedObject": {
                    "apiVersion": ref.api_version, "kind": ref.kind,
                    "name": ref.name, "namespace": ref.namespace,
                },
                "reason": reason,
                "message": message,
                "type": "Warning" if warning else "Normal",
                "source": {"component": "aibrix-scaler"},
                "reportingComponent": "aibrix-scaler",
                "firstTimestamp": now.isoformat(),
                "lastTimestamp": now.isoformat(),
                "count": 1,
            }
        )
        if event is None:
            raise ValueError(f"could not build an Event for {ref.kind} {ref.name}")
        await asyncio.to_thread(self._core.create_namespaced_event, ref.namespace, event)

    async def read_lease(self, namespace: str, name: str) -> k8s.V1Lease | None:
        try:
            return await asyncio.to_thread(self._coordination.read_namespaced_lease, name, namespace)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, lease: k8s.V1Lease) -> k8s.V1Lease:
        return await asyncio.to_thread(self._coordination.create_namespaced_lease, namespace, lease)

    async def replace_lease(self, namespace: str, name: str, lease: k8s.V1Lease) -> k8s.V1Lease:
        return await asyncio.to_thread(self._coordination.replace_namespaced_lease, name, namespace, lease)


def _scale_state(scale: k8s.V1Scale) -> ScaleState:
    spec = scale.spec.replicas if scale.spec is not None and scale.spec.replicas is not None else 0
    status = scale.status.replicas if scale.status is not None and scale.status.replicas is not None else 0
    return ScaleState(spec_replicas=spec, status_replicas=status)


def _endpoint(pod: k8s.V1Pod) -> PodEndpoint:
    meta = pod.metadata if pod.metadata is not None else k8s.V1ObjectMeta()
    labels = meta.labels or {}
    port_text = labels.get(PORT_LABEL)
    port = int(port_text) if port_text is not None and port_text.isdigit() else None
    status = pod.status
    conditions = (status.conditions or []) if status is not None else []
    ready = (
        status is not None
        and status.phase == "Running"
        and meta.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in conditions)
    )
    ip = (status.pod_ip or "") if status is not None else ""
    return PodEndpoint(name=meta.name or "", ip=ip, port=port, ready=ready and bool(ip))
