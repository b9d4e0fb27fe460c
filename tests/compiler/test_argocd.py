"""ArgoCD integration: run the plugin's generate command exactly as the cmp-server would.

The sidecar runs ``generate.command + generate.args`` with the app directory as working
directory, the ARGOCD_* and KUBE_* variables set, and no stdin. stdout must be a valid
YAML stream of objects; a bad stack must exit non-zero with empty stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler.crds import VENDORED_CRDS, load_crds, validate_custom_resources

from .helpers import EXAMPLES, REPO

ARGOCD = REPO / "argocd"


def generate(app_dir: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    plugin = yaml.safe_load((ARGOCD / "plugin.yaml").read_text())
    command = plugin["spec"]["generate"]["command"] + plugin["spec"]["generate"]["args"]
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": str(app_dir),
        "ARGOCD_APP_NAME": "llm-prod",
        "ARGOCD_APP_NAMESPACE": "llm-prod",
        "ARGOCD_APP_SOURCE_PATH": "stacks/prod",
        "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example.com/platform/inference-stacks.git",
        "ARGOCD_APP_SOURCE_TARGET_REVISION": "main",
        "KUBE_VERSION": "1.31.4",
        "KUBE_API_VERSIONS": "v1,apps/v1,policy/v1,autoscaling/v2",
        **extra_env,
    }
    if os.environ.get("PYTHONPATH"):  # the tree under test, when it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        command, cwd=app_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    if shutil.which("aibrix-compile", path=str(Path(sys.executable).parent)) is None and shutil.which("aibrix-compile") is None:
        pytest.skip("the aibrix-compile console script is not installed (pip install -e .)")
    source = (EXAMPLES / "quickstart.yaml").read_text().replace("  namespace: llm\n", "")
    (tmp_path / "inferencestack.yaml").write_text(source)
    return tmp_path


def test_plugin_discovers_the_stack_file() -> None:
    plugin = yaml.safe_load((ARGOCD / "plugin.yaml").read_text())
    assert plugin["kind"] == "ConfigManagementPlugin" and plugin["apiVersion"] == "argoproj.io/v1alpha1"
    assert plugin["spec"]["discover"]["fileName"] == "./inferencestack.yaml"


def test_generate_prints_a_valid_stream_for_the_app_namespace(app_dir: Path) -> None:
    result = generate(app_dir)
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs and all(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") for d in docs)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"llm-prod"}


@pytest.mark.parametrize(
    "breakage, env, message",
    [
        (lambda p: p.write_text(p.read_text().replace("placement", "placment")), {}, "error: inferencestack.yaml:"),
        (lambda p: p.write_text(p.read_text().replace("pools: [l4]", "pools: [l40]")), {}, 'unknown pool "l40"'),
        (lambda p: p.unlink(), {}, "cannot read inferencestack.yaml: no such file"),
        (lambda p: None, {"KUBE_VERSION": "1.12.0"}, "--kube-version 1.12 is not supported"),
        (lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes()), {}, "the file is not UTF-8 text"),
        (lambda p: None, {"ARGOCD_APP_NAMESPACE": ""}, "ArgoCD did not set ARGOCD_APP_NAMESPACE"),
    ],
)
def test_generate_fails_loudly_with_empty_stdout(app_dir: Path, breakage, env: dict[str, str], message: str) -> None:  # type: ignore[no-untyped-def]
    breakage(app_dir / "inferencestack.yaml")
    result = generate(app_dir, **env)
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr


def test_a_cluster_newer_than_the_compiler_still_syncs_with_a_warning(app_dir: Path) -> None:
    # The day a cluster is upgraded past the newest version this compiler knows, apps keep syncing.
    newest = generate(app_dir, KUBE_VERSION="1.37.0")
    result = generate(app_dir, KUBE_VERSION="v1.38.0+k3s1")
    assert (result.returncode, result.stdout) == (0, newest.stdout)
    assert "warning: --kube-version 1.38 is newer than the newest version this aibrix-compile knows (1.37)" in result.stderr


def test_stack_file_can_be_chosen_by_plugin_env(app_dir: Path) -> None:
    (app_dir / "inferencestack.yaml").rename(app_dir / "prod.yaml")
    assert generate(app_dir, ARGOCD_ENV_STACK_FILE="prod.yaml").returncode == 0


def test_application_and_patch_are_well_formed() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["spec"]["source"]["plugin"]["name"] == "aibrix-compile-v1"  # <name>-<version> of the plugin
    (ignored,) = app["spec"]["ignoreDifferences"]
    # Only what an autoscaler writes is ignored, never /spec/replicas of every Deployment.
    assert ignored == {"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["aibrix-scaler", "kube-controller-manager"]}
    patch = yaml.safe_load((ARGOCD / "repo-server-patch.yaml").read_text())
    (sidecar,) = patch["spec"]["template"]["spec"]["containers"]
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"]["runAsUser"] == 999
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert mounts == {"var-files": "/var/run/argocd", "plugins": "/home/argocd/cmp-server/plugins", "aibrix-compile-tmp": "/tmp"}
    # The sidecar image is the argocd-cmp target of the Containerfile (built by scripts/build-images).
    stage = (REPO / "Containerfile").read_text().split("AS argocd-cmp", 1)[1]
    assert "/home/argocd/cmp-server/config/plugin.yaml" in stage and "USER 999:999" in stage


def test_ignored_manager_is_the_one_the_scaler_writes_with() -> None:
    # The scaler patches deployments/scale under this field manager (runtime_components/scaler/kube.py).
    scaler_client = (REPO / "runtime_components" / "scaler" / "kube.py").read_text()
    assert 'field_manager="aibrix-scaler"' in scaler_client


def test_application_passes_its_crd() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert validate_custom_resources([app], load_crds(VENDORED_CRDS, groups={"argoproj.io"})) == []
