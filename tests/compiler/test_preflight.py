"""``aibrix-compile preflight`` against a fake API server that replays recorded responses.

One passing cluster for examples/stacks/production.yaml, then each failure the command must
report (a table row marked FAIL and exit 1), and the errors that stop it (exit 1, one line).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="preflight needs the kubernetes client (pip install -e '.[preflight]')")

from compiler.cli import main  # noqa: E402

from .fake_cluster import FakeCluster, recorded_responses  # noqa: E402
from .helpers import EXAMPLES  # noqa: E402

PRODUCTION = str(EXAMPLES / "production.yaml")


def preflight(tmp_path: Path, responses: dict[str, Any], capsys: pytest.CaptureFixture[str], *argv: str,
              stack: str = PRODUCTION, **kubeconfig: Any) -> tuple[int, str, str, FakeCluster]:
    with FakeCluster(responses) as cluster:
        config = cluster.kubeconfig(tmp_path / "kubeconfig", **kubeconfig)
        code = main(["preflight", stack, "--kubeconfig", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out, err, cluster


def rows(out: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(check, object) -> (result, detail) of the table."""
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for line in out.splitlines()[1:-1]:
        check, subject, result, detail = line.split(None, 3)
        table[(check, subject)] = (result, detail)
    return table


def test_a_ready_cluster_passes_every_check(tmp_path, capsys):
    code, out, err, cluster = preflight(tmp_path, recorded_responses(), capsys)
    assert code == 0, out + err
    table = rows(out)
    assert {k for k, (result, _) in table.items() if result != "ok"} == set()
    assert set(table) == {
        ("crd", "backendtrafficpolicies.gateway.envoyproxy.io"), ("crd", "gateways.gateway.networking.k8s.io"),
        ("crd", "httproutes.gateway.networking.k8s.io"), ("crd", "inferencepools.inference.networking.k8s.io"),
        ("crd", "scaledobjects.keda.sh"), ("crd", "podmonitors.monitoring.coreos.com"),
        ("crd", "prometheusrules.monitoring.coreos.com"), ("crd", "servicemonitors.monitoring.coreos.com"),
        ("namespace", "llm-prod"), ("secret", "llm-prod/api-keys"), ("secret", "llm-prod/hf-token"),
        ("secret", "llm-prod/redis-auth"), ("gatewayclass", "eg"),
        ("gpu", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"), ("gpu", "nvidia.com/gpu.product=NVIDIA-L20"),
    }
    # h100-2 is cordoned: 16 schedulable GPUs; llama-3-70b 1x8 and llama-3-8b-h100 1x1 at minimum.
    assert table[("gpu", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3")][1] == (
        "16 nvidia.com/gpu allocatable on 2 node(s), 9 needed at minimum replicas (llama-3-70b 1x8, llama-3-8b-h100 1x1)"
    )
    assert out.splitlines()[-1] == "preflight: 15 check(s), 0 failed"
    # Read-only, and Secrets only ever as metadata.
    assert {method for method, _, _ in cluster.requests} == {"GET"}
    secret_requests = [accept for _, path, accept in cluster.requests if path.endswith("/secrets")]
    assert secret_requests and all("as=PartialObjectMetadataList" in a for a in secret_requests)


def _failing(tmp_path, capsys, responses, check, subject, *, stack=PRODUCTION):
    code, out, err, _ = preflight(tmp_path, responses, capsys, stack=stack)
    table = rows(out)
    assert code == 1, out + err
    assert table[(check, subject)][0] == "FAIL", out
    assert out.splitlines()[-1].endswith(f"{sum(1 for r, _ in table.values() if r == 'FAIL')} failed")
    return table[(check, subject)][1]


def test_a_missing_api_group_fails_its_crds(tmp_path, capsys):
    responses = recorded_responses()
    responses["/apis"] = copy.deepcopy(responses["/apis"])
    responses["/apis"]["groups"] = [g for g in responses["/apis"]["groups"] if g["name"] != "keda.sh"]
    detail = _failing(tmp_path, capsys, responses, "crd", "scaledobjects.keda.sh")
    assert detail == "API group keda.sh is not served; install the prerequisites: aibrix-compile prerequisites STACK.yaml"


def test_a_served_group_without_the_resource_fails(tmp_path, capsys):
    responses = recorded_responses()
    listing = responses["/apis/inference.networking.k8s.io/v1"]
    listing["resources"] = [r for r in listing["resources"] if not r["name"].startswith("inferencepools")]
    detail = _failing(tmp_path, capsys, responses, "crd", "inferencepools.inference.networking.k8s.io")
    assert detail.startswith("inference.networking.k8s.io/v1 is served but has no inferencepools")


def test_a_group_serving_another_version_fails(tmp_path, capsys):
    responses = recorded_responses()
    for group in responses["/apis"]["groups"]:
        if group["name"] == "ray.io":
            group["versions"] = [{"groupVersion": "ray.io/v1alpha1", "version": "v1alpha1"}]
    multinode = str(EXAMPLES / "multinode-2node.yaml")
    detail = _failing(tmp_path, capsys, responses, "crd", "rayclusters.ray.io", stack=multinode)
    assert detail.startswith("ray.io serves v1alpha1, not v1")


def test_a_missing_secret_fails_without_reading_values(tmp_path, capsys):
    responses = recorded_responses()
    secrets = responses["/api/v1/namespaces/llm-prod/secrets"]
    secrets["items"] = [s for s in secrets["items"] if s["metadata"]["name"] != "hf-token"]
    detail = _failing(tmp_path, capsys, responses, "secret", "llm-prod/hf-token")
    assert detail == ("absent; create it before syncing (used by Deployment/llama-3-70b, Deployment/llama-3-8b-h100, "
                      "Deployment/llama-3-8b-l20)")


def test_a_missing_namespace_fails_and_so_do_its_secrets(tmp_path, capsys):
    responses = recorded_responses()
    del responses["/api/v1/namespaces/llm-prod"]
    detail = _failing(tmp_path, capsys, responses, "namespace", "llm-prod")
    assert detail == "absent; create it or set spec.createNamespace: true"


def test_a_namespace_the_stack_creates_may_be_absent(tmp_path, capsys):
    code, out, err, _ = preflight(tmp_path, recorded_responses(), capsys, stack=str(EXAMPLES / "quickstart.yaml"))
    table = rows(out)
    assert table[("namespace", "llm")] == ("ok", "absent; the stack creates it (spec.createNamespace)")
    # quickstart asks for an NVIDIA L4 the recorded cluster does not have.
    assert table[("gpu", "nvidia.com/gpu.product=NVIDIA-L4")] == (
        "FAIL", "no schedulable node matches; needed for qwen2-5-0-5b 1x1")
    assert code == 1


def test_too_few_gpus_for_minimum_replicas_fails(tmp_path, capsys):
    responses = recorded_responses()
    for node in responses["/api/v1/nodes"]["items"]:
        if node["metadata"]["name"] == "h100-1":
            node["spec"]["unschedulable"] = True
    detail = _failing(tmp_path, capsys, responses, "gpu", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3")
    assert detail.startswith("8 nvidia.com/gpu allocatable on 1 node(s), 9 needed at minimum replicas")


def test_no_node_big_enough_for_one_pod_fails(tmp_path, capsys):
    responses = recorded_responses()
    for node in responses["/api/v1/nodes"]["items"]:
        if node["metadata"]["name"].startswith("h100"):
            node["status"]["allocatable"]["nvidia.com/gpu"] = "4"
            node["spec"].pop("unschedulable", None)
    detail = _failing(tmp_path, capsys, responses, "gpu", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3")
    assert detail == "llama-3-70b needs 8 nvidia.com/gpu per pod; the largest of 3 matching node(s) offers 4"


def test_a_missing_runtime_class_and_gateway_class_fail(tmp_path, capsys):
    responses = recorded_responses()
    responses["/apis/node.k8s.io/v1/runtimeclasses"]["items"] = []
    detail = _failing(tmp_path, capsys, responses, "runtimeclass", "nvidia", stack=str(EXAMPLES / "multinode-4node.yaml"))
    assert detail.startswith("absent; the NVIDIA GPU Operator creates 'nvidia'")
    responses["/apis/gateway.networking.k8s.io/v1/gatewayclasses"]["items"] = []
    detail = _failing(tmp_path, capsys, responses, "gatewayclass", "eg")
    assert detail.startswith("absent; create it for Envoy Gateway")


def test_context_selects_the_cluster(tmp_path, capsys):
    # The current context is the fake; --context dead points at a closed port.
    code, out, err, _ = preflight(tmp_path, recorded_responses(), capsys, "--context", "dead",
                                  extra_context=("dead", "http://127.0.0.1:9"))
    assert (code, out) == (1, "")
    assert err.startswith("error: cannot reach the cluster at http://127.0.0.1:9: ")
    assert "Traceback" not in err


def test_a_refused_token_is_one_clear_error(tmp_path, capsys):
    code, out, err, _ = preflight(tmp_path, recorded_responses(), capsys, token="wrong")
    assert (code, out) == (1, "")
    assert err.startswith("error: the cluster at http://127.0.0.1:")
    assert "refused GET /api (401 Unauthorized); preflight needs read access" in err


def test_a_missing_kubeconfig_is_one_clear_error(tmp_path, capsys):
    code = main(["preflight", PRODUCTION, "--kubeconfig", str(tmp_path / "nope")])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == f"error: --kubeconfig {tmp_path / 'nope'}: no such file; expected a kubeconfig file\n"


def test_an_unknown_context_is_one_clear_error(tmp_path, capsys):
    code, out, err, _ = preflight(tmp_path, recorded_responses(), capsys, "--context", "nowhere")
    assert (code, out) == (1, "")
    assert err.startswith("error: cannot load the kubeconfig ") and "nowhere" in err
