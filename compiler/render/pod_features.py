"""Features added to engine pods, as typed mutators the engine pod builder applies to every
engine pod the plan holds (Deployment pods and RayCluster heads and workers alike).

``LORA_SIDECAR`` (models with ``adapters``; serving pods: a Deployment's and a Ray head's):

- the ``sidecar`` container: ``aibrix-sidecar --config ... --engine http://127.0.0.1:<port>
  --pod-name $(POD_NAME) --namespace $(POD_NAMESPACE) --port 9090`` (POD_* from the downward
  API). Where the target Kubernetes version runs native sidecars (1.29+) it is an init
  container with ``restartPolicy: Always``: it starts before the engine and stops after it;
  on older versions it is an ordinary second container;
- least privilege for the API token: the ServiceAccount token is NOT automounted (the engine
  runs model code); a projected token volume is mounted into the sidecar container only;
- emptyDir ``/adapters`` in both containers (the sidecar runs ``aibrix-runtime download`` for
  s3://, gs://, https:// and oci:// adapters into it, the engine loads them from there);
  ``pvc://claim/path`` adapters are mounted read-only at ``/adapter-volumes/claim``
  in both and declared to the sidecar as ``file:///adapter-volumes/claim/path``;
- engine env ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (enables load/unload endpoints); hub
  adapters whose Secret differs from the model's give the engine ``HF_TOKEN``; s3:// adapters
  give the sidecar ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (required) and
  ``AWS_SESSION_TOKEN``/``AWS_REGION``/``AWS_ENDPOINT_URL`` (optional keys); gs:// adapters the
  same two keys of their own Secret as ``AIBRIX_GS_ACCESS_KEY_ID``/``AIBRIX_GS_SECRET_ACCESS_KEY``
  (HMAC keys; the endpoint is in the sidecar config); https:// adapters their Secret's key
  ``token`` as the file ``/var/run/secrets/aibrix-adapter-token/token``; oci:// adapters a
  ``kubernetes.io/dockerconfigjson`` Secret as ``/var/run/secrets/aibrix-adapter-registry/config.json``
  (the sidecar config names both paths). Each kind has one Secret per model.

``MODEL_DOWNLOAD`` (weights the plan downloads: s3://, gs://, https://, oci://; every engine
pod, since each Ray pod loads its own shard): an init container runs ``aibrix-runtime download
<uri> --dest <cache>/<key>`` (the runtime image) before the engine starts, with the source's
Secret as its environment (AWS_* keys), or for https:// its key ``token`` mounted as a file
(a bearer token), or for oci:// a ``kubernetes.io/dockerconfigjson`` Secret mounted as
``$DOCKER_CONFIG/config.json`` (registry credentials, as a pull secret holds them); with a
shared cache (``spec.modelCache``) also ``--cache-root`` and
``--cache-max-bytes``, so pods of a node (hostPath) or of the cluster (a ReadWriteMany claim)
download a model once and the least recently used models are evicted past the bound. The
engine mounts the cache read-only.

``WEIGHTS_STREAM`` (s3:// and gs:// streamed by vLLM's Run:ai Model Streamer): the engine reads
the object store itself (``--load-format runai_streamer``); for an S3-compatible endpoint
(``source.endpoint``; gs:// uses Cloud Storage's XML API) it gets ``AWS_ENDPOINT_URL``,
path-style addressing and no EC2 metadata lookups.

``RAY_LAUNCHER`` (every Ray head): the head runs ``python3 -m runtime_components.ray_launcher.cli``
(vLLM starts once every worker's GPUs joined), from the same copy of our packages as below,
made by the runtime image (``images.downloader``), since the vLLM image does not contain it.

``KV_CONNECTOR`` (models using the KV pool; every engine pod, since Ray workers run vLLM
workers that load the connector too): stock vLLM images do not contain the connector, so an
init container (the pool's image) copies the pure-Python packages ``runtime_components`` and
``aibrix_spec`` into an emptyDir, mounted read-only in the engine at ``/opt/aibrix`` with
``PYTHONPATH`` pointing there (a user-set PYTHONPATH is kept after it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..plan import AdapterPlan, ModelPlan, Plan
from ..plan.models import ADAPTER_PVC_ROOT, ADAPTER_REGISTRY_DIR, ADAPTER_TOKEN_DIR
from .component_parts import NONROOT_UID, container_security

__all__ = [
    "ADAPTER_DIR",
    "CONNECTOR_DIR",
    "KV_CONNECTOR",
    "LORA_SIDECAR",
    "MODEL_DOWNLOAD",
    "MUTATORS",
    "PACKAGES_VOLUME",
    "RAY_LAUNCHER",
    "WEIGHTS_STREAM",
    "SIDECAR_CONFIG_DIR",
    "SIDECAR_PORT",
    "EngineRole",
    "PodMutator",
    "PodSpec",
]

EngineRole = Literal["server", "ray-head", "ray-worker"]
PodSpec = dict[str, Any]

SIDECAR_PORT = 9090
SIDECAR_CONFIG_DIR = "/etc/aibrix-sidecar"
ADAPTER_DIR = "/adapters"
#: Where engine pods find our packages (an emptyDir filled by the init container).
CONNECTOR_DIR = "/opt/aibrix"
PACKAGES_VOLUME = "aibrix-packages"
_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the Kubernetes client looks
_AWS_REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_AWS_OPTIONAL = ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL")
_COPY_PACKAGES = (
    "import os, shutil, aibrix_spec, runtime_components\n"
    "for package in (aibrix_spec, runtime_components):\n"
    "    source = os.path.dirname(package.__file__)\n"
    "    shutil.copytree(source, os.path.join(os.environ['TARGET'], package.__name__), dirs_exist_ok=True,\n"
    "                    ignore=shutil.ignore_patterns('__pycache__'))\n"
)


@dataclass(frozen=True)
class PodMutator:
    """A feature added to engine pods: ``applies`` decides from the plan, ``apply`` edits the
    pod spec it is given (a copy the builder made)."""

    name: str
    applies: Callable[[ModelPlan, EngineRole], bool]
    apply: Callable[[Plan, ModelPlan, PodSpec], PodSpec]


def _engine(pod: PodSpec) -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == "engine")


def _secret_env(name: str, secret: str, *, optional: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": name}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _sidecar_container(plan: Plan, model: ModelPlan, sidecar: AdapterPlan, pvc_mounts: list[dict[str, Any]]) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if sidecar.s3_secret is not None:
        env += [_secret_env(k, sidecar.s3_secret, optional=False) for k in _AWS_REQUIRED]
        env += [_secret_env(k, sidecar.s3_secret, optional=True) for k in _AWS_OPTIONAL]
    if sidecar.gs_secret is not None:  # its own names: the sidecar hands them to gs:// downloads only
        env += [
            {"name": f"AIBRIX_GS_{k.removeprefix('AWS_')}", "valueFrom": {"secretKeyRef": {"name": sidecar.gs_secret, "key": k}}}
            for k in _AWS_REQUIRED
        ]
    command = ["aibrix-sidecar", "--config", f"{SIDECAR_CONFIG_DIR}/config.yaml", "--engine", f"http://127.0.0.1:{model.port}"]
    command += ["--pod-name", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)", "--port", str(SIDECAR_PORT)]
    container: dict[str, Any] = {
        "name": "sidecar",
        "image": sidecar.image,
        "imagePullPolicy": plan.pull_policy,
        "command": command,
        "env": env,
        "ports": [{"name": "sidecar", "containerPort": SIDECAR_PORT, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "sidecar"}, "periodSeconds": 20, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [
            {"name": "sidecar-config", "mountPath": SIDECAR_CONFIG_DIR, "readOnly": True},
            {"name": "adapters", "mountPath": ADAPTER_DIR},
            {"name": "sidecar-token", "mountPath": _TOKEN_DIR, "readOnly": True},
            *_credential_mounts(sidecar),
            *pvc_mounts,
        ],
        "securityContext": {**container_security(), "runAsNonRoot": True, "runAsUser": NONROOT_UID},
    }
    if plan.features.native_sidecars:
        container["restartPolicy"] = "Always"
    return container


def _credential_mounts(sidecar: AdapterPlan) -> list[dict[str, Any]]:
    mounts = []
    if sidecar.token_secret is not None:
        mounts.append({"name": "adapter-source-token", "mountPath": ADAPTER_TOKEN_DIR, "readOnly": True})
    if sidecar.registry_secret is not None:
        mounts.append({"name": "adapter-registry-auth", "mountPath": ADAPTER_REGISTRY_DIR, "readOnly": True})
    return mounts


def _credential_volumes(sidecar: AdapterPlan) -> list[dict[str, Any]]:
    """https:// adapters' bearer token and oci:// adapters' registry credentials, as files in
    the sidecar only (the engine never sees them)."""
    volumes = []
    if sidecar.token_secret is not None:
        items = [{"key": "token", "path": "token"}]
        volumes.append({"name": "adapter-source-token", "secret": {"secretName": sidecar.token_secret, "items": items}})
    if sidecar.registry_secret is not None:
        items = [{"key": ".dockerconfigjson", "path": "config.json"}]
        volumes.append({"name": "adapter-registry-auth", "secret": {"secretName": sidecar.registry_secret, "items": items}})
    return volumes


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


def _add_sidecar(plan: Plan, model: ModelPlan, pod: PodSpec) -> PodSpec:
    sidecar = model.adapters
    assert sidecar is not None  # applies() checked it
    pvc_mounts = [
        {"name": f"adapter-pvc-{k}", "mountPath": f"{ADAPTER_PVC_ROOT}/{claim}", "readOnly": True}
        for k, claim in enumerate(sidecar.pvc_claims)
    ]
    pvc_volumes = [
        {"name": f"adapter-pvc-{k}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        for k, claim in enumerate(sidecar.pvc_claims)
    ]
    engine = _engine(pod)
    env = [e for e in engine.get("env", []) if e["name"] not in ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "HF_TOKEN")]
    env.append({"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"})
    if sidecar.hf_secret is not None:
        env.append(_secret_env("HF_TOKEN", sidecar.hf_secret, optional=False))
    engine["env"] = sorted(env, key=lambda e: e["name"])
    engine["volumeMounts"] = [*engine.get("volumeMounts", []), {"name": "adapters", "mountPath": ADAPTER_DIR}, *pvc_mounts]
    container = _sidecar_container(plan, model, sidecar, pvc_mounts)
    pod.setdefault("initContainers" if plan.features.native_sidecars else "containers", []).append(container)
    pod["volumes"] = [
        *pod.get("volumes", []),
        {"name": "adapters", "emptyDir": {}},
        {"name": "sidecar-config", "configMap": {"name": sidecar.config_map}},
        _token_volume(),
        *_credential_volumes(sidecar),
        *pvc_volumes,
    ]
    return pod


def _add_packages(plan: Plan, pod: PodSpec, image: str) -> PodSpec:
    """Our pure-Python packages in an emptyDir on the engine's PYTHONPATH (once per pod): stock
    engine images have neither the KV connector nor the Ray launcher."""
    if any(v["name"] == PACKAGES_VOLUME for v in pod.get("volumes", [])):
        return pod
    pod.setdefault("volumes", []).append({"name": PACKAGES_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}})
    pod.setdefault("initContainers", []).append(
        {
            "name": PACKAGES_VOLUME,
            "image": image,
            "imagePullPolicy": plan.pull_policy,
            "command": ["python3", "-c", _COPY_PACKAGES],
            "env": [{"name": "TARGET", "value": CONNECTOR_DIR}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": PACKAGES_VOLUME, "mountPath": CONNECTOR_DIR}],
            "securityContext": container_security(),
        }
    )
    engine = pod["containers"][0]  # the engine, or a Ray worker's only container
    env = engine.setdefault("env", [])
    user = next((e for e in env if e["name"] == "PYTHONPATH"), None)
    if user is not None:
        user["value"] = f"{CONNECTOR_DIR}:{user['value']}"
    else:
        env.append({"name": "PYTHONPATH", "value": CONNECTOR_DIR})
        env.sort(key=lambda e: e["name"])
    engine.setdefault("volumeMounts", []).append({"name": PACKAGES_VOLUME, "mountPath": CONNECTOR_DIR, "readOnly": True})
    return pod


def _add_connector(plan: Plan, model: ModelPlan, pod: PodSpec) -> PodSpec:
    pool = plan.kv_pool
    assert pool is not None  # the plan sets kv_connector only with the pool on
    return _add_packages(plan, pod, pool.component.image)


def _add_launcher(plan: Plan, model: ModelPlan, pod: PodSpec) -> PodSpec:
    return _add_packages(plan, pod, plan.runtime_image)


_TOKEN_MOUNT = "/var/run/secrets/aibrix-source"
_REGISTRY_MOUNT = "/var/run/secrets/aibrix-registry"


def _add_download(plan: Plan, model: ModelPlan, pod: PodSpec) -> PodSpec:
    weights = model.weights
    assert weights is not None and weights.cache is not None and weights.dest is not None  # applies() checked
    args = [weights.uri, "--dest", weights.dest]
    if weights.cache.kind != "emptyDir":
        args += ["--cache-root", weights.cache.mount, "--cache-max-bytes", str(weights.cache.max_bytes)]
    if weights.endpoint is not None:
        args += ["--endpoint", weights.endpoint]
    mounts: list[dict[str, Any]] = [{"name": "model-cache", "mountPath": weights.cache.mount}]
    container: dict[str, Any] = {
        "name": "model-download",
        "image": weights.downloader_image,
        "imagePullPolicy": plan.pull_policy,
        "command": ["aibrix-runtime", "download"],
        "args": args,
    }
    if weights.token_secret is not None:
        args += ["--token-file", f"{_TOKEN_MOUNT}/token"]
        mounts.append({"name": "source-token", "mountPath": _TOKEN_MOUNT, "readOnly": True})
        pod["volumes"].append(
            {"name": "source-token", "secret": {"secretName": weights.token_secret, "items": [{"key": "token", "path": "token"}]}}
        )
    elif weights.registry_secret is not None:  # a kubernetes.io/dockerconfigjson Secret
        container["env"] = [{"name": "DOCKER_CONFIG", "value": _REGISTRY_MOUNT}]
        mounts.append({"name": "registry-auth", "mountPath": _REGISTRY_MOUNT, "readOnly": True})
        items = [{"key": ".dockerconfigjson", "path": "config.json"}]
        pod["volumes"].append({"name": "registry-auth", "secret": {"secretName": weights.registry_secret, "items": items}})
    elif model.secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": model.secret_ref}}]
    container |= {
        # Parallel ranged reads keep a few chunks in flight; the bytes go to the volume.
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    pod.setdefault("initContainers", []).append(container)
    return pod


def _add_stream_env(plan: Plan, model: ModelPlan, pod: PodSpec) -> PodSpec:
    weights = model.weights
    assert weights is not None and weights.endpoint is not None  # applies() checked
    engine = pod["containers"][0]  # the engine, or a Ray worker's only container
    env = [e for e in engine.get("env", []) if e["name"] not in _STREAM_ENV]
    values = {
        "AWS_ENDPOINT_URL": weights.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
    }
    env += [{"name": k, "value": v} for k, v in values.items()]
    engine["env"] = sorted(env, key=lambda e: e["name"])
    return pod


_STREAM_ENV = ("AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED", "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING")

MODEL_DOWNLOAD = PodMutator(
    "model-download",
    applies=lambda model, role: model.weights is not None and model.weights.loader == "download",
    apply=_add_download,
)
WEIGHTS_STREAM = PodMutator(
    "weights-stream",
    applies=lambda model, role: (
        model.weights is not None and model.weights.loader == "stream" and model.weights.endpoint is not None
    ),
    apply=_add_stream_env,
)
LORA_SIDECAR = PodMutator(
    "lora-sidecar", applies=lambda model, role: model.adapters is not None and role != "ray-worker", apply=_add_sidecar
)
KV_CONNECTOR = PodMutator("kv-connector", applies=lambda model, role: model.kv_connector, apply=_add_connector)
RAY_LAUNCHER = PodMutator("ray-launcher", applies=lambda model, role: role == "ray-head", apply=_add_launcher)

#: Applied in this order to every engine pod: the weights first (the download is the first
#: init container), then the sidecar, then the packages' copy (for the connector or the launcher).
MUTATORS: tuple[PodMutator, ...] = (MODEL_DOWNLOAD, WEIGHTS_STREAM, LORA_SIDECAR, KV_CONNECTOR, RAY_LAUNCHER)
