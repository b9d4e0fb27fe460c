"""Golden output at the oldest supported Kubernetes version: where the target version changes
what is emitted (native sidecars from 1.29, a PDB's unhealthyPodEvictionPolicy from 1.27), the
examples pinned at the default (newest) version in ``tests/golden/<example>/`` are pinned at the
oldest one too, in ``tests/golden/oldest-kube/<example>/expected/``.

Rewrite with ``python -m pytest tests/golden --update-golden`` and review the git diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import compile_stack
from compiler.kube_version import OLDEST, format_version
from compiler.outdir import read_tree, write_tree

from .test_golden import UPDATE, _tree_diff

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "oldest-kube"
#: Examples whose output depends on the version: LoRA sidecars and engine budgets.
PINNED = ("lora", "quickstart")


@pytest.mark.parametrize("example", PINNED)
def test_example_at_the_oldest_version_matches_golden(example: str, update_golden: bool) -> None:
    source = REPO / "examples" / "stacks" / f"{example}.yaml"
    actual = compile_stack(source.read_text(encoding="utf-8"), source_name=f"examples/stacks/{source.name}", kube_version=format_version(OLDEST))
    expected_dir = GOLDEN / example / "expected"
    if update_golden:
        write_tree(expected_dir, actual)
        return
    diff = _tree_diff(read_tree(expected_dir) if expected_dir.is_dir() else {}, actual)
    assert not diff, f"{example} at Kubernetes {format_version(OLDEST)} changed; if intended run: {UPDATE}\n{diff}"


def test_the_versions_really_differ() -> None:
    source = (REPO / "examples" / "stacks" / "lora.yaml").read_text(encoding="utf-8")
    oldest = compile_stack(source, source_name="lora.yaml", kube_version=format_version(OLDEST))
    newest = compile_stack(source, source_name="lora.yaml")
    assert "restartPolicy: Always" not in oldest["engine/deployment-llama-3-8b.yaml"]
    assert "restartPolicy: Always" in newest["engine/deployment-llama-3-8b.yaml"]
