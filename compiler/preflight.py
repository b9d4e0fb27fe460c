"""``aibrix-compile preflight``: read-only checks that a cluster can run a compiled stack.

What is checked comes from the compiled manifests (:mod:`compiler.cluster_needs`):

- every custom resource the output uses is served (API discovery: ``/apis``, then
  ``/apis/GROUP/VERSION``), the way ``kubectl api-resources`` sees CRDs;
- each GPU pool (one node selector and extended resource): schedulable nodes match the
  selector, some node offers each workload's GPUs per pod, and their allocatable GPUs add up
  to what the workloads need at their minimum replicas (taints and other pods' use are not
  counted: a necessary condition, not a guarantee);
- each namespace exists, or the stack creates it (``spec.createNamespace``);
- each Secret a pod references exists, listed as *metadata only*
  (``PartialObjectMetadataList``): values are never requested;
- each RuntimeClass and GatewayClass named exists.

Only GET requests. The official Kubernetes client is imported inside :func:`run_preflight`,
never on the compile path. :func:`preflight_findings` takes any :class:`ClusterReader`, so it
is tested against recorded API responses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from .cluster_needs import ClusterNeeds, GpuWorkload
from .errors import AibrixError

__all__ = ["ClusterReader", "Finding", "PreflightError", "format_findings", "preflight_findings", "run_preflight"]

METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_HINT_PREREQ = "install the prerequisites: aibrix-compile prerequisites STACK.yaml"


class PreflightError(AibrixError):
    """The cluster could not be asked (unreachable, refused, bad kubeconfig); ``str()`` says how to fix it."""


class ClusterReader(Protocol):
    def get(self, path: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        """The JSON body of ``GET path``; None when the API answers 404."""


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    ok: bool
    detail: str


def _served(cluster: ClusterReader, needs: ClusterNeeds) -> list[Finding]:
    findings = []
    groups = {g["name"]: {v["version"] for v in g.get("versions", [])} for g in (cluster.get("/apis") or {}).get("groups", [])}
    resources: dict[str, set[str]] = {}
    for r in needs.custom_resources:
        if r.version not in groups.get(r.group, set()):
            if r.group in groups:
                detail = f"{r.group} serves {', '.join(sorted(groups[r.group]))}, not {r.version}"
            else:
                detail = f"API group {r.group} is not served"
            findings.append(Finding("crd", r.crd_name, False, f"{detail}; {_HINT_PREREQ}"))
            continue
        key = f"{r.group}/{r.version}"
        if key not in resources:
            listing = cluster.get(f"/apis/{key}") or {}
            resources[key] = {res["name"] for res in listing.get("resources", [])}
        if r.plural in resources[key]:
            findings.append(Finding("crd", r.crd_name, True, f"{r.kind} served at {key}"))
        else:
            findings.append(Finding("crd", r.crd_name, False, f"{key} is served but has no {r.plural}; {_HINT_PREREQ}"))
    return findings


def _quantity(text: Any) -> int:
    """An extended resource's allocatable count (integers; '8' or 8)."""
    try:
        return int(str(text))
    except ValueError:
        return 0


def _gpus(cluster: ClusterReader, needs: ClusterNeeds) -> list[Finding]:
    if not needs.gpu_workloads:
        return []
    nodes = [n for n in (cluster.get("/api/v1/nodes") or {}).get("items", []) if not n.get("spec", {}).get("unschedulable")]
    pools: dict[tuple[tuple[tuple[str, str], ...], str], list[GpuWorkload]] = {}
    for w in needs.gpu_workloads:
        pools.setdefault((w.node_selector, w.resource), []).append(w)
    findings = []
    for (selector, resource), workloads in sorted(pools.items()):
        subject = ",".join(f"{k}={v}" for k, v in selector) or "(any node)"
        matching = [n for n in nodes if all(n["metadata"].get("labels", {}).get(k) == v for k, v in selector)]
        allocatable = {
            n["metadata"]["name"]: _quantity(n.get("status", {}).get("allocatable", {}).get(resource, 0)) for n in matching
        }
        total, needed = sum(allocatable.values()), sum(w.per_pod * w.pods for w in workloads)
        shape = ", ".join(f"{w.name} {w.pods}x{w.per_pod}" for w in workloads)
        if not matching:
            findings.append(Finding("gpu", subject, False, f"no schedulable node matches; needed for {shape}"))
            continue
        too_big = [w for w in workloads if w.pods and max(allocatable.values()) < w.per_pod]
        if too_big:
            w = too_big[0]
            findings.append(
                Finding(
                    "gpu",
                    subject,
                    False,
                    f"{w.name} needs {w.per_pod} {resource} per pod; the largest "
                    f"of {len(matching)} matching node(s) offers {max(allocatable.values())}",
                )
            )
        elif total < needed:
            findings.append(
                Finding(
                    "gpu",
                    subject,
                    False,
                    f"{total} {resource} allocatable on {len(matching)} node(s), {needed} needed at minimum replicas ({shape})",
                )
            )
        else:
            findings.append(
                Finding(
                    "gpu",
                    subject,
                    True,
                    f"{total} {resource} allocatable on {len(matching)} node(s), {needed} needed at minimum replicas ({shape})",
                )
            )
    return findings


def _namespaces(cluster: ClusterReader, needs: ClusterNeeds) -> tuple[list[Finding], set[str]]:
    findings, existing = [], set()
    for ns in needs.namespaces:
        if cluster.get(f"/api/v1/namespaces/{ns}") is not None:
            existing.add(ns)
            findings.append(Finding("namespace", ns, True, "exists"))
        elif ns in needs.created_namespaces:
            findings.append(Finding("namespace", ns, True, "absent; the stack creates it (spec.createNamespace)"))
        else:
            findings.append(Finding("namespace", ns, False, "absent; create it or set spec.createNamespace: true"))
    return findings, existing


def _secrets(cluster: ClusterReader, needs: ClusterNeeds, existing_namespaces: set[str]) -> list[Finding]:
    findings: list[Finding] = []
    names: dict[str, set[str]] = {}
    for use in needs.secrets:
        if use.namespace not in names:
            listing = (
                cluster.get(f"/api/v1/namespaces/{use.namespace}/secrets", metadata_only=True)
                if use.namespace in existing_namespaces
                else None
            )
            names[use.namespace] = {item["metadata"]["name"] for item in (listing or {}).get("items", [])}
        subject = f"{use.namespace}/{use.name}"
        users = sorted(u.used_by for u in needs.secrets if (u.namespace, u.name) == (use.namespace, use.name))
        if subject in {f.subject for f in findings}:
            continue
        if use.name in names[use.namespace]:
            findings.append(Finding("secret", subject, True, f"exists (used by {', '.join(users)})"))
        else:
            findings.append(Finding("secret", subject, False, f"absent; create it before syncing (used by {', '.join(users)})"))
    return findings


def _named(cluster: ClusterReader, check: str, path: str, names: tuple[str, ...], hint: str) -> list[Finding]:
    if not names:
        return []
    present = {item["metadata"]["name"] for item in (cluster.get(path, metadata_only=True) or {}).get("items", [])}
    return [Finding(check, n, n in present, "exists" if n in present else f"absent; {hint}") for n in names]


def preflight_findings(needs: ClusterNeeds, cluster: ClusterReader) -> list[Finding]:
    """Every check, in a fixed order: CRDs, namespaces, Secrets, RuntimeClasses, GatewayClasses, GPUs."""
    if cluster.get("/api") is None:
        raise PreflightError("the cluster does not serve /api; is the kubeconfig's server a Kubernetes API server?")
    findings = _served(cluster, needs)
    ns_findings, existing = _namespaces(cluster, needs)
    findings += ns_findings
    findings += _secrets(cluster, needs, existing)
    findings += _named(
        cluster,
        "runtimeclass",
        "/apis/node.k8s.io/v1/runtimeclasses",
        needs.runtime_classes,
        "the NVIDIA GPU Operator creates 'nvidia'; see aibrix-compile prerequisites",
    )
    served = {f.subject for f in findings if f.check == "crd" and f.ok}
    if "gateways.gateway.networking.k8s.io" in served:
        findings += _named(
            cluster,
            "gatewayclass",
            "/apis/gateway.networking.k8s.io/v1/gatewayclasses",
            needs.gateway_classes,
            "create it for Envoy Gateway (controllerName gateway.envoyproxy.io/gatewayclass-controller)",
        )
    findings += _gpus(cluster, needs)
    return findings


def format_findings(findings: list[Finding]) -> str:
    """A fixed-width table, then one summary line."""
    rows = [("CHECK", "OBJECT", "RESULT", "DETAIL")] + [
        (f.check, f.subject, "ok" if f.ok else "FAIL", f.detail) for f in findings
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    failed = sum(1 for f in findings if not f.ok)
    lines.append(f"preflight: {len(findings)} check(s), {failed} failed")
    return "\n".join(lines) + "\n"


class _KubeReader:
    """ClusterReader over the official client's ApiClient (GET only, no retries)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.host = api.configuration.host

    def _fetch(self, path: str, accept: str) -> tuple[int, str, bytes]:
        """(status, reason, body) of one GET, whichever generation of the client is installed."""
        from kubernetes.client.exceptions import ApiException

        if hasattr(self.api, "param_serialize"):  # kubernetes >= 35: call_api(method, url, ...) returns the response
            method, url, headers, _body, _post = self.api.param_serialize(
                "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
            )
            response = self.api.call_api(method, url, header_params=headers, _request_timeout=15)
            response.read()
            return response.status, str(response.reason), response.data
        try:
            response = self.api.call_api(
                path,
                "GET",
                header_params={"Accept": accept},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=15,
            )
        except ApiException as exc:
            return int(exc.status), str(exc.reason), b""
        return 200, "OK", response.data

    def get(self, path: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        from urllib3.exceptions import HTTPError

        try:
            status, reason, data = self._fetch(path, METADATA_ONLY if metadata_only else "application/json")
        except HTTPError as exc:
            raise PreflightError(f"cannot reach the cluster at {self.host}: {exc}; check the kubeconfig and --context") from None
        if status == 404:
            return None
        if status in (401, 403):
            raise PreflightError(
                f"the cluster at {self.host} refused GET {path} ({status} {reason}); preflight needs read "
                "access (get/list) to discovery, namespaces, nodes, secrets (metadata), runtimeclasses"
            )
        if status >= 300:
            raise PreflightError(f"GET {path} on {self.host} failed: {status} {reason}")
        try:
            document: dict[str, Any] = json.loads(data)
            return document
        except ValueError:
            raise PreflightError(f"GET {path} on {self.host} did not return JSON; is it a Kubernetes API server?") from None


def _connect(kubeconfig: str | None, context: str | None) -> _KubeReader:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    default = Path(os.environ.get("KUBECONFIG", "~/.kube/config")).expanduser()
    try:
        if kubeconfig is None and context is None and not default.exists() and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            if kubeconfig is not None and not Path(kubeconfig).is_file():
                raise PreflightError(f"--kubeconfig {kubeconfig}: no such file; expected a kubeconfig file")
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except ConfigException as exc:
        where = kubeconfig or str(default)
        raise PreflightError(f"cannot load the kubeconfig {where}: {exc}; pass --kubeconfig FILE and --context NAME") from None
    configuration.retries = 0
    return _KubeReader(client.ApiClient(configuration))


def run_preflight(needs: ClusterNeeds, *, kubeconfig: str | None, context: str | None, out: TextIO) -> int:
    """Connect, check, print the table; 0 when every check passed, else 1."""
    reader = _connect(kubeconfig, context)
    findings = preflight_findings(needs, reader)
    out.write(format_findings(findings))
    return 0 if all(f.ok for f in findings) else 1
