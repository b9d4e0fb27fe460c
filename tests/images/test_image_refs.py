"""The images scripts/build-images builds match what the compiled output references.

Building needs buildah and minutes (``bash scripts/build-images --test``, a CI stage); these
tests pin the contract between the build, the Containerfile and the compiler without building.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build-images"


def _checker():
    spec = importlib.util.spec_from_file_location("check_image_refs", REPO / "scripts" / "check_image_refs.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _list(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_list_and_the_compiler_defaults_agree() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "check_image_refs.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("image references agree: 8 images built")


def test_the_check_fails_when_an_image_is_missing_from_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = _checker()
    real = checker.built_images()
    monkeypatch.setattr(checker, "built_images", lambda: [r for r in real if "/scaler:" not in r])
    found = checker.problems()
    assert found and found[0].startswith("scripts/build-images --list prints")
    assert any("uses ghcr.io/aibrix-stack/scaler:0.1.0, which is neither upstream" in line for line in found)


def test_list_prints_one_reference_per_target_tagged_with_the_package_version() -> None:
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    refs = _list("--list").stdout.split()
    targets = re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Containerfile").read_text(), re.M)
    assert [r.rsplit("/", 1)[1] for r in refs] == [f"{t}:{version}" for t in targets if t not in ("build", "runtime")]
    assert _list("--list", "--registry", "registry.example.com/platform").stdout.split()[0] == (
        f"registry.example.com/platform/gateway:{version}"
    )


def test_bad_arguments_are_one_clear_error() -> None:
    done = _list("--bogus")
    assert done.returncode == 1
    assert done.stderr == "error: unknown argument '--bogus'; expected --list, --test, --registry R or --base IMAGE (see --help)\n"
    assert _list("--registry").stderr.startswith("error: --registry needs a value")


def test_the_containerfile_keeps_the_runtime_contract() -> None:
    text = (REPO / "Containerfile").read_text()
    assert re.search(r"^ARG BASE=docker\.io/library/python:3\.11-slim-bookworm", text, re.M)
    assert text.count("USER 65532:65532") == 1 and "USER 999:999" in text
    # Exec-form entrypoints only: the console script is PID 1 and receives SIGTERM itself.
    entrypoints = re.findall(r"^ENTRYPOINT (.*)$", text, re.M)
    assert entrypoints and all(e.startswith('["aibrix-') for e in entrypoints)
    for label in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "HOME=/tmp" in text


def test_component_stages_derive_an_entrypoint_and_labels_each() -> None:
    spec = importlib.util.spec_from_file_location("containerfile_stages", REPO / "scripts" / "containerfile_stages.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    stages = module.component_stages((REPO / "Containerfile").read_text())
    assert sorted(stages) == ["diag", "downloader", "gateway", "kv-server", "optimizer", "scaler", "sidecar"]
    assert stages["gateway"] == [
        "--label", "org.opencontainers.image.title=aibrix-gateway",
        "--label", "org.opencontainers.image.description=LLM-aware Envoy ext_proc gateway",
        "--entrypoint", '["aibrix-gateway"]',
    ]
    with pytest.raises(SystemExit, match="only LABEL and ENTRYPOINT can be derived"):
        module.component_stages("FROM runtime AS x\nRUN true\n")
