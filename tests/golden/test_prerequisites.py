"""Golden tests of ``aibrix-compile prerequisites``: each example's Applications, pinned.

``tests/golden/<example>/prerequisites.yaml`` holds the exact stdout of
``aibrix-compile prerequisites examples/stacks/<example>.yaml``. Every Application validates
against Argo CD's Application CRD (vendored in tests/fixtures/crds), CRD-only Applications
come in an earlier sync wave than operators, and exactly the API groups the compiled objects
use are covered. Rewrite with ``python -m pytest tests/golden --update-golden``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from compiler.cli import main
from compiler.cluster_needs import BUILT_IN_GROUPS, cluster_needs
from compiler.crds import load_crds, validate_custom_resources
from compiler.errors import CompilerBug
from compiler.manifest import Manifest
from compiler.pipeline import compile_manifests
from compiler.prerequisites import OPERATORS, prerequisite_applications

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
EXAMPLES = sorted((REPO / "examples" / "stacks").glob("*.yaml"))
APPLICATION_CRD = REPO / "tests" / "fixtures" / "crds"
UPDATE = "python -m pytest tests/golden --update-golden"


def _prerequisites(example: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["prerequisites", str(example)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_prerequisites_match_golden(example: Path, update_golden: bool, capsys: pytest.CaptureFixture[str]) -> None:
    actual = _prerequisites(example, capsys)
    golden = GOLDEN / example.stem / "prerequisites.yaml"
    if update_golden:
        golden.write_text(actual)
        return
    expected = golden.read_text() if golden.is_file() else ""
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(golden), "actual"))
    assert not diff, f"prerequisites of {example.name} changed; if intended run: {UPDATE}\n{diff}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_applications_are_valid_and_cover_exactly_the_groups_used(example: Path) -> None:
    _plan, manifests = compile_manifests(example.read_text(), source_name=example.name)
    apps = prerequisite_applications(cluster_needs(manifests))
    assert validate_custom_resources(apps, load_crds(APPLICATION_CRD)) == []
    used = {m.body["apiVersion"].rpartition("/")[0] for m in manifests} - BUILT_IN_GROUPS
    covered = {group for op in OPERATORS if op.name in {a["metadata"]["name"] for a in apps} for group in op.groups}
    assert used <= covered
    # No operator beyond what is used (Envoy Gateway covers two groups).
    assert all(op.groups & used for op in OPERATORS if op.name in {a["metadata"]["name"] for a in apps})
    waves = [int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for a in apps]
    assert waves == sorted(waves) and all(w < 0 for w in waves)


def test_crd_only_applications_sync_before_operators() -> None:
    crd_only = {op.wave for op in OPERATORS if op.namespace is None}
    operators = {op.wave for op in OPERATORS if op.namespace is not None}
    assert max(crd_only) < min(operators) < 0
    assert all(op.source["targetRevision"] not in ("", "HEAD", "main", "master", "latest") for op in OPERATORS)


def test_a_group_no_prerequisite_provides_is_a_compiler_bug() -> None:
    odd = Manifest("engine", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "x"}})
    with pytest.raises(CompilerBug, match=r"uses Widget \(example.com/v1\), and no prerequisite provides that API group"):
        prerequisite_applications(cluster_needs([odd]))


def test_the_stream_starts_with_notes_and_parses(capsys: pytest.CaptureFixture[str]) -> None:
    out = _prerequisites(REPO / "examples" / "stacks" / "multinode-4node.yaml", capsys)
    assert out.startswith("# Prerequisites of InferenceStack ")
    assert "# - RuntimeClass nvidia: named by GPU pods" in out
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d]
    assert names == ["prometheus-operator-crds", "kuberay-operator"]
