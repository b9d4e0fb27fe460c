"""The YAML shown in docs/diag.md stays valid: the config block lists the real defaults."""

from __future__ import annotations

import re

import pytest

from aibrix_spec.components.diag import DiagConfig, FaultFile
from runtime_components.diag.loading import load_model

from .helpers import REPO

DOC = REPO / "docs" / "diag.md"


def yaml_block_after(heading: str) -> str:
    text = DOC.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, f"no yaml block after {heading!r}"
    return match.group(1)


def test_config_block_shows_the_defaults() -> None:
    shown = load_model(yaml_block_after("## Config"), DiagConfig, source="docs/diag.md")
    assert shown == DiagConfig(expected_gpu_count=8)


@pytest.mark.parametrize("heading", ["## The failure mock-up"])
def test_fault_file_block_is_valid(heading: str) -> None:
    faults = load_model(yaml_block_after(heading), FaultFile, source="docs/diag.md")
    assert [g.index for g in faults.gpus] == [3, 4, 5]
