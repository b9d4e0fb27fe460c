"""Renderer family "adapters": LoRA adapters of single-node models, served by the engine sidecar.

For each model with ``adapters`` (the engine's ``--enable-lora --max-loras N --max-lora-rank R``
flags come from :mod:`compiler.engine_args`; N = ``lora.maxLoras``, else min(adapters, 8)):

``render`` adds
- ConfigMap ``<model>-adapters``, key ``config.yaml``: a validated
  :class:`aibrix_spec.components.sidecar.SidecarConfig` (served name, maxLoras, each adapter's
  uri and replicas, pods ``{kind: kubernetes, labelSelector: <the model's pod selector>}``);
  an adapter without ``replicas`` is wanted on every pod, written as replicas.max (placement
  never uses more pods than are ready);
- Role + RoleBinding ``<model>-sidecar`` granting ``pods: list, watch`` in the namespace to
  the model's ServiceAccount (a pod has one identity; the core family creates it).

``amend`` then changes each of the model's Deployments:
- the ``sidecar`` container: ``aibrix-sidecar --config ... --engine http://127.0.0.1:<port>
  --pod-name $(POD_NAME) --namespace $(POD_NAMESPACE) --port 9090`` (POD_* from the downward
  API), image ``images.sidecar``;
- least privilege for the API token: the ServiceAccount token is NOT automounted (the engine
  runs model code); a projected token volume is mounted into the sidecar container only;
- emptyDir ``/adapters`` in both containers (s3:// downloads land there, the engine loads them
  from there); ``pvc://claim/path`` adapters are mounted read-only at ``/adapter-volumes/claim``
  in both and declared to the sidecar as ``file:///adapter-volumes/claim/path``;
- engine env ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (enables load/unload endpoints).

Credentials only by reference: ``hf://`` adapters whose ``secretRef`` differs from the model's
give the engine ``HF_TOKEN`` (secretKeyRef; vLLM downloads hub adapters itself); ``s3://``
adapters give the sidecar ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (required) and
``AWS_SESSION_TOKEN``/``AWS_REGION``/``AWS_ENDPOINT_URL`` (optional keys). One process reads one
variable, so adapters of a model that name two different Secrets for the same kind of
source are a spec error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aibrix_spec import ModelSpec
from aibrix_spec.components.sidecar import PodSource, SidecarAdapter, SidecarConfig

from ..errors import Diagnostic, SpecValidationError
from ..manifest import Manifest
from ..plan import ModelPlan, Plan
from .component_parts import container_security, dump_config
from .core import COMPONENT, selector_labels

__all__ = ["SIDECAR_PORT", "amend", "render", "sidecar_config"]

SIDECAR_PORT = 9090
CONFIG_DIR = "/etc/aibrix-sidecar"
ARTIFACT_DIR = "/adapters"
PVC_ROOT = "/adapter-volumes"
_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the Kubernetes client looks
_AWS_REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_AWS_OPTIONAL = ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class _Credentials:
    hf_secret: str | None  #: Secret with HF_TOKEN for the engine (None: none, or the model's own)
    s3_secret: str | None  #: Secret with AWS_* keys for the sidecar


def _adapter_models(plan: Plan) -> list[tuple[ModelPlan, ModelSpec]]:
    return [(m, plan.stack.spec.models[m.index]) for m in plan.models if plan.stack.spec.models[m.index].adapters]


def _sidecar_uri(uri: str) -> str:
    if uri.startswith("pvc://"):
        return f"file://{PVC_ROOT}/{uri.removeprefix('pvc://')}"
    return uri


def _pvc_claims(spec: ModelSpec) -> list[str]:
    uris = [a.source.uri for a in spec.adapters if a.source.uri.startswith("pvc://")]
    return sorted({uri.removeprefix("pvc://").partition("/")[0] for uri in uris})


def sidecar_config(plan: Plan, model: ModelPlan, spec: ModelSpec) -> SidecarConfig:
    """The sidecar's config for one model; a URI the sidecar cannot fetch is a spec error."""
    adapters, problems = [], []
    every_pod = max(1, model.replicas_max)
    for j, adapter in enumerate(spec.adapters):
        try:
            uri = _sidecar_uri(adapter.source.uri)
            adapters.append(SidecarAdapter(name=adapter.name, uri=uri, replicas=adapter.replicas or every_pod))
        except ValidationError:
            problems.append(
                Diagnostic(
                    ("spec", "models", model.index, "adapters", j, "source", "uri"),
                    f'adapter "{adapter.name}": the sidecar cannot fetch "{adapter.source.uri}"',
                    expected="hf://org/repo[@revision], s3://bucket/prefix or pvc://claim/path",
                    hint="hf:// takes exactly org/repo (no sub-folder); s3:// a lowercase bucket name",
                )
            )
    if problems:
        raise SpecValidationError(problems)
    selector = ",".join(f"{k}={v}" for k, v in selector_labels(plan, model).items())
    return SidecarConfig(
        model=model.served_name,
        max_loras=int(spec.lora.max_loras or 1),
        adapters=adapters,
        pods=PodSource(kind="kubernetes", label_selector=selector),
        artifact_dir=ARTIFACT_DIR,
    )


def _one_secret(model: ModelPlan, spec: ModelSpec, scheme: str, what: str) -> str | None:
    refs = [
        (j, a.source.secret_ref)
        for j, a in enumerate(spec.adapters)
        if a.source.uri.startswith(scheme) and a.source.secret_ref
    ]
    if scheme == "hf://":  # the model's own Secret is already the engine's environment
        refs = [(j, ref) for j, ref in refs if ref != model.secret_ref]
    names = sorted({ref for _j, ref in refs})
    if len(names) > 1:
        j = next(j for j, ref in refs if ref == names[1])
        raise SpecValidationError(
            [
                Diagnostic(
                    ("spec", "models", model.index, "adapters", j, "source", "secretRef"),
                    f"{scheme} adapters of one model must share one Secret; found {', '.join(names)}",
                    expected=f"one Secret holding {what} for every {scheme} adapter of this model",
                    hint="merge the keys into one Secret and reference it from each adapter",
                )
            ]
        )
    return names[0] if names else None


def _credentials(model: ModelPlan, spec: ModelSpec) -> _Credentials:
    return _Credentials(
        hf_secret=_one_secret(model, spec, "hf://", "HF_TOKEN"),
        s3_secret=_one_secret(model, spec, "s3://", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    )


def _secret_env(name: str, secret: str, *, optional: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": name}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def render(plan: Plan) -> list[Manifest]:
    """The sidecar ConfigMap and pod-reading RBAC of every model with adapters."""
    out: list[Manifest] = []
    for model, spec in _adapter_models(plan):
        _credentials(model, spec)  # refuse conflicting Secrets before anything is emitted
        labels = {"app.kubernetes.io/name": model.name, "model.aibrix.ai/name": model.name}
        config = dump_config(sidecar_config(plan, model, spec))
        out.append(
            Manifest(
                COMPONENT,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"{model.name}-adapters", "labels": labels},
                    "data": {"config.yaml": config},
                },
            )
        )
        name = f"{model.name}-sidecar"
        rbac = "rbac.authorization.k8s.io/v1"
        rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
        role = {"apiVersion": rbac, "kind": "Role", "metadata": {"name": name, "labels": labels}, "rules": rules}
        out.append(Manifest(COMPONENT, role))
        binding = {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": model.name, "namespace": plan.namespace}],
        }
        out.append(Manifest(COMPONENT, binding))
    return out


def _sidecar_container(
    plan: Plan, model: ModelPlan, creds: _Credentials, pvc_mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if creds.s3_secret is not None:
        env += [_secret_env(k, creds.s3_secret, optional=False) for k in _AWS_REQUIRED]
        env += [_secret_env(k, creds.s3_secret, optional=True) for k in _AWS_OPTIONAL]
    command = ["aibrix-sidecar", "--config", f"{CONFIG_DIR}/config.yaml", "--engine", f"http://127.0.0.1:{model.port}"]
    command += ["--pod-name", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)", "--port", str(SIDECAR_PORT)]
    return {
        "name": "sidecar",
        "image": plan.images.sidecar,
        "imagePullPolicy": plan.images.pull_policy,
        "command": command,
        "env": env,
        "ports": [{"name": "sidecar", "containerPort": SIDECAR_PORT, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "sidecar"}, "periodSeconds": 20, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [
            {"name": "sidecar-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "adapters", "mountPath": ARTIFACT_DIR},
            {"name": "sidecar-token", "mountPath": _TOKEN_DIR, "readOnly": True},
            *pvc_mounts,
        ],
        "securityContext": {**container_security(), "runAsNonRoot": True, "runAsUser": 65532},
    }


def _token_volume() -> dict[str, Any]:
    """What automounting would give every container, given to the sidecar alone."""
    return {
        "name": "sidecar-token",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }


def _with_sidecar(plan: Plan, model: ModelPlan, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    pod = body["spec"]["template"]["spec"]
    creds = _credentials(model, spec)
    claims = _pvc_claims(spec)
    pvc_mounts = [
        {"name": f"adapter-pvc-{k}", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True} for k, claim in enumerate(claims)
    ]
    pvc_volumes = [
        {"name": f"adapter-pvc-{k}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        for k, claim in enumerate(claims)
    ]
    engine = next(c for c in pod["containers"] if c["name"] == "engine")
    env = [e for e in engine.get("env", []) if e["name"] not in ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "HF_TOKEN")]
    env.append({"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"})
    if creds.hf_secret is not None:
        env.append(_secret_env("HF_TOKEN", creds.hf_secret, optional=False))
    engine["env"] = sorted(env, key=lambda e: e["name"])
    engine["volumeMounts"] = [*engine.get("volumeMounts", []), {"name": "adapters", "mountPath": ARTIFACT_DIR}, *pvc_mounts]
    pod["containers"].append(_sidecar_container(plan, model, creds, pvc_mounts))
    pod["volumes"] = [
        *pod.get("volumes", []),
        {"name": "adapters", "emptyDir": {}},
        {"name": "sidecar-config", "configMap": {"name": f"{model.name}-adapters"}},
        _token_volume(),
        *pvc_volumes,
    ]
    return body


def amend(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    """Every Deployment of a model with adapters gets the sidecar (see the module docstring)."""
    by_name = {model.name: (model, spec) for model, spec in _adapter_models(plan)}
    out = []
    for m in manifests:
        owner = m.body.get("metadata", {}).get("labels", {}).get("model.aibrix.ai/name")
        if m.kind == "Deployment" and m.component == COMPONENT and owner in by_name:
            model, spec = by_name[owner]
            m = Manifest(m.component, _with_sidecar(plan, model, spec, m.body))
        out.append(m)
    return out
