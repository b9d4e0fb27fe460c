"""The adapters family: sidecar container, its config and RBAC, LoRA engine settings, credentials by reference."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aibrix_spec.components.sidecar import SidecarConfig
from compiler import SpecError

from .helpers import with_model
from .render_helpers import assert_valid, compiled, containers, env_of, of_kind


def adapter(name: str, uri: str, secret: str | None = None, replicas: int | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"uri": uri, **({"secretRef": secret} if secret else {})}
    return {"name": name, "source": source, **({"replicas": replicas} if replicas else {})}


def lora_stack(*adapters: dict[str, Any], **model: Any) -> dict[str, Any]:
    return with_model(adapters=list(adapters), **model)


def sidecar_config(objects: list[dict[str, Any]]) -> SidecarConfig:
    return SidecarConfig.model_validate(yaml.safe_load(of_kind(objects, "ConfigMap")["small-adapters"]["data"]["config.yaml"]))


def test_deployment_gets_the_sidecar_wired_to_its_engine() -> None:
    objects = compiled(lora_stack(adapter("sql", "hf://org/sql"), engine={"port": 8001}))
    (deployment,) = of_kind(objects, "Deployment").values()
    pod = deployment["spec"]["template"]["spec"]
    engine, sidecar = containers(deployment["spec"]["template"])["engine"], containers(deployment["spec"]["template"])["sidecar"]
    assert sidecar["command"] == [
        "aibrix-sidecar", "--config", "/etc/aibrix-sidecar/config.yaml", "--engine", "http://127.0.0.1:8001",
        "--pod-name", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)", "--port", "9090",
    ]  # fmt: skip
    assert sidecar["image"] == "ghcr.io/aibrix-stack/sidecar:0.1.0"
    assert env_of(sidecar)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env_of(sidecar)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env_of(engine)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert {"name": "adapters", "mountPath": "/adapters"} in engine["volumeMounts"]
    assert {"name": "adapters", "mountPath": "/adapters"} in sidecar["volumeMounts"]
    # The API token reaches the sidecar only, never the engine.
    assert pod["automountServiceAccountToken"] is False
    token_mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert [m["mountPath"] for m in sidecar["volumeMounts"]].count(token_mount) == 1
    assert token_mount not in [m["mountPath"] for m in engine["volumeMounts"]]
    assert "aibrix.ai/config-checksum" in deployment["spec"]["template"]["metadata"]["annotations"]
    assert_valid(objects)


@pytest.mark.parametrize(
    "lora, count, expected",
    [({}, 3, ("3", "16")), ({}, 12, ("8", "16")), ({"maxLoras": 2, "maxRank": 64}, 3, ("2", "64"))],
)
def test_lora_flags_sized_from_the_stack(lora: dict[str, Any], count: int, expected: tuple[str, str]) -> None:
    objects = compiled(lora_stack(*(adapter(f"a-{i}", f"hf://org/a-{i}") for i in range(count)), lora=lora))
    args = containers(next(iter(of_kind(objects, "Deployment").values()))["spec"]["template"])["engine"]["args"]
    assert "--enable-lora" in args
    assert (args[args.index("--max-loras") + 1], args[args.index("--max-lora-rank") + 1]) == expected
    assert sidecar_config(objects).max_loras == int(expected[0])


def test_config_names_adapters_replicas_and_the_pods_to_watch() -> None:
    data = lora_stack(adapter("hot", "hf://org/hot", replicas=3), adapter("cold", "s3://bucket/cold"), replicas={"min": 2})
    objects = compiled(data)
    config = sidecar_config(objects)
    # No replicas means every pod: the most pods the model can have (placement caps at ready pods).
    assert [(a.name, a.uri, a.replicas) for a in config.adapters] == [("hot", "hf://org/hot", 3), ("cold", "s3://bucket/cold", 2)]
    assert config.model == "small" and config.artifact_dir == "/adapters"
    selector = dict(pair.split("=") for pair in config.pods.label_selector.split(","))
    (deployment,) = of_kind(objects, "Deployment").values()
    assert config.pods.kind == "kubernetes"
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_role_lets_the_model_account_list_and_watch_pods_only() -> None:
    objects = compiled(lora_stack(adapter("sql", "hf://org/sql")))
    (role,) = of_kind(objects, "Role").values()
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    (binding,) = of_kind(objects, "RoleBinding").values()
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "small", "namespace": "llm"}]
    (deployment,) = of_kind(objects, "Deployment").values()
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "small"


@pytest.mark.parametrize(
    "model_secret, adapters, engine_hf, sidecar_aws",
    [
        (None, [adapter("a", "hf://o/a")], None, None),
        ("hf", [adapter("a", "hf://o/a", "hf")], None, None),  # the model's Secret is already envFrom
        ("hf", [adapter("a", "hf://o/a", "hf-adapters")], "hf-adapters", None),
        (None, [adapter("a", "s3://b/a", "s3-creds"), adapter("b", "s3://b/b", "s3-creds")], None, "s3-creds"),
    ],
)
def test_credentials_only_by_reference(
    model_secret: str | None, adapters: list[dict[str, Any]], engine_hf: str | None, sidecar_aws: str | None
) -> None:
    source = {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", **({"secretRef": model_secret} if model_secret else {})}
    objects = compiled(lora_stack(*adapters, source=source))
    pod = containers(next(iter(of_kind(objects, "Deployment").values()))["spec"]["template"])
    engine_env, sidecar_env = env_of(pod["engine"]), env_of(pod["sidecar"])
    if engine_hf is None:
        assert "HF_TOKEN" not in engine_env
    else:
        assert engine_env["HF_TOKEN"] == {"secretKeyRef": {"name": engine_hf, "key": "HF_TOKEN"}}
    aws = {k: v for k, v in sidecar_env.items() if k.startswith("AWS_")}
    if sidecar_aws is None:
        assert aws == {}
    else:
        assert aws["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": sidecar_aws, "key": "AWS_ACCESS_KEY_ID"}}
        assert aws["AWS_SESSION_TOKEN"]["secretKeyRef"]["optional"] is True
    assert not any(k.startswith("AWS_") for k in engine_env)
    assert all("value" not in e for e in pod["sidecar"]["env"] + pod["engine"]["env"] if e["name"].startswith(("AWS_", "HF_TOKEN")))


def _template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(next(iter(of_kind(objects, "Deployment").values()))["spec"]["template"])


def test_adapters_from_every_downloaded_source_compile_with_credentials_by_reference() -> None:
    s3 = adapter("from-s3", "s3://loras/sql", "aws")
    s3["source"]["endpoint"] = "http://minio.storage:9000/"
    objects = compiled(
        lora_stack(
            s3,
            adapter("from-gs", "gs://gcs-loras/chat", "gcs-hmac"),
            adapter("from-https", "https://models.example.com/loras/summarize.tar.gz", "web-token"),
            adapter("from-oci", "oci://registry.example.com/loras/de:v1", "registry-pull"),
            adapter("public-gs", "gs://public-loras/x"),
        )
    )
    assert_valid(objects)
    entries = {a.name: a for a in sidecar_config(objects).adapters}
    assert (entries["from-s3"].uri, entries["from-s3"].endpoint) == ("s3://loras/sql", "http://minio.storage:9000")
    assert entries["from-gs"].endpoint == entries["public-gs"].endpoint == "https://storage.googleapis.com"
    assert entries["from-https"].token_file == "/var/run/secrets/aibrix-adapter-token/token"
    assert entries["from-oci"].docker_config == "/var/run/secrets/aibrix-adapter-registry"
    assert entries["from-s3"].token_file is None and entries["from-oci"].endpoint is None

    template = _template(objects)
    pod = containers(template)
    env = env_of(pod["sidecar"])
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "aws", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AIBRIX_GS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "gcs-hmac", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AIBRIX_GS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "gcs-hmac", "key": "AWS_SECRET_ACCESS_KEY"}}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["adapter-source-token"]["secret"] == {
        "secretName": "web-token", "items": [{"key": "token", "path": "token"}]
    }  # fmt: skip
    assert volumes["adapter-registry-auth"]["secret"] == {
        "secretName": "registry-pull", "items": [{"key": ".dockerconfigjson", "path": "config.json"}]
    }  # fmt: skip
    sidecar_mounts = {m["name"]: m for m in pod["sidecar"]["volumeMounts"]}
    assert sidecar_mounts["adapter-source-token"]["mountPath"] == "/var/run/secrets/aibrix-adapter-token"
    assert sidecar_mounts["adapter-registry-auth"]["readOnly"] is True
    # Credentials reach the sidecar only: the engine has no such mounts or variables.
    engine_mounts = {m["name"] for m in pod["engine"]["volumeMounts"]}
    assert not engine_mounts & {"adapter-source-token", "adapter-registry-auth"}
    assert not any(k.startswith(("AWS_", "AIBRIX_GS_")) for k in env_of(pod["engine"]))


def test_adapters_without_secrets_get_no_credential_mounts() -> None:
    objects = compiled(lora_stack(adapter("a", "https://models.example.com/a.tar"), adapter("b", "oci://ghcr.io/o/b:1")))
    assert_valid(objects)
    entries = sidecar_config(objects).adapters
    assert [(a.token_file, a.docker_config) for a in entries] == [(None, None), (None, None)]
    names = {v["name"] for v in _template(objects)["spec"]["volumes"]}
    assert not names & {"adapter-source-token", "adapter-registry-auth"}


def test_pvc_adapters_are_mounted_in_both_containers() -> None:
    objects = compiled(lora_stack(adapter("local", "pvc://lora-store/team/sql")))
    assert sidecar_config(objects).adapters[0].uri == "file:///adapter-volumes/lora-store/team/sql"
    template = next(iter(of_kind(objects, "Deployment").values()))["spec"]["template"]
    mount = {"name": "adapter-pvc-0", "mountPath": "/adapter-volumes/lora-store", "readOnly": True}
    assert all(mount in c["volumeMounts"] for c in containers(template).values() if c["name"] in ("engine", "sidecar"))
    assert {"name": "adapter-pvc-0", "persistentVolumeClaim": {"claimName": "lora-store", "readOnly": True}} in template["spec"][
        "volumes"
    ]


def test_every_pool_deployment_gets_a_sidecar() -> None:
    data = lora_stack(adapter("sql", "hf://org/sql"), placement={"pools": ["l4", "a10"]})
    data["spec"]["gpuPools"].append({"name": "a10", "accelerator": "nvidia-a10", "gpusPerNode": 4})
    deployments = of_kind(compiled(data), "Deployment")
    assert sorted(deployments) == ["small-a10", "small-l4"]
    assert all("sidecar" in containers(d["spec"]["template"]) for d in deployments.values())


def test_changing_an_adapter_rolls_the_pods() -> None:
    def checksum(uri: str) -> str:
        (deployment,) = of_kind(compiled(lora_stack(adapter("sql", uri))), "Deployment").values()
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["aibrix.ai/config-checksum"])

    assert checksum("hf://org/sql-v1") != checksum("hf://org/sql-v2")


@pytest.mark.parametrize(
    "adapters, path, message",
    [
        (
            [adapter("a", "hf://o/a", "one"), adapter("b", "hf://o/b", "two")],
            ("spec", "models", 0, "adapters", 1, "source", "secretRef"),
            "hf:// adapters of one model must share one Secret; found one, two",
        ),
        (
            [adapter("a", "s3://b/a", "one"), adapter("b", "s3://b/b", "two")],
            ("spec", "models", 0, "adapters", 1, "source", "secretRef"),
            "s3:// adapters of one model must share one Secret; found one, two",
        ),
        (
            [adapter("a", "https://h.example/a", "one"), adapter("b", "https://h.example/b", "two")],
            ("spec", "models", 0, "adapters", 1, "source", "secretRef"),
            "https:// adapters of one model must share one Secret; found one, two",
        ),
        (
            [adapter("a", "oci://r.example/a:1", "one"), adapter("b", "oci://r.example/b:1", "two")],
            ("spec", "models", 0, "adapters", 1, "source", "secretRef"),
            "oci:// adapters of one model must share one Secret; found one, two",
        ),
        (
            [adapter("a", "gs://b/a", "one"), adapter("b", "gs://b/b", "two")],
            ("spec", "models", 0, "adapters", 1, "source", "secretRef"),
            "gs:// adapters of one model must share one Secret; found one, two",
        ),
        (
            [adapter("a", "hf://o/a"), adapter("deep", "hf://org/repo/sub")],
            ("spec", "models", 0, "adapters", 1, "source", "uri"),
            'adapter "deep": the sidecar cannot fetch "hf://org/repo/sub"',
        ),
        (
            [adapter("site", "https://models.example.com")],
            ("spec", "models", 0, "adapters", 0, "source", "uri"),
            'adapter "site": the sidecar cannot fetch "https://models.example.com"',
        ),
    ],
)
def test_adapter_errors_name_the_field(adapters: list[dict[str, Any]], path: tuple[Any, ...], message: str) -> None:
    with pytest.raises(SpecError) as info:
        compiled(lora_stack(*adapters))
    (d,) = info.value.diagnostics
    assert (d.path, d.message) == (path, message)
    assert d.line > 0 and d.expected
