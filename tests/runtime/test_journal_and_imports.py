"""The resume journal's arithmetic and its tolerance of a killed writer; the package's imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_components.runtime.journal import Journal, missing_ranges

PACKAGE = Path(__file__).resolve().parents[2] / "runtime_components" / "runtime"


@pytest.mark.parametrize(
    ("size", "done", "chunk", "missing"),
    [
        (10, [], 4, [(0, 4), (4, 8), (8, 10)]),
        (10, [(0, 4), (8, 10)], 4, [(4, 8)]),
        (10, [(2, 3)], 100, [(0, 2), (3, 10)]),
        (10, [(0, 6), (3, 10)], 4, []),  # overlapping records
        (10, [(4, 5), (0, 1), (4, 5)], 3, [(1, 4), (5, 8), (8, 10)]),  # unordered, repeated
        (0, [], 4, []),
    ],
)
def test_missing_ranges(size: int, done: list[tuple[int, int]], chunk: int, missing: list[tuple[int, int]]) -> None:
    assert missing_ranges(size, done, chunk) == missing


def test_a_torn_line_is_ignored_and_drops_apply(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path, "s3://b/m")
    j.record("model/a", "v1", 0, 5)
    j.record("model/b", "v1", 0, 5)
    j.drop("model/b")
    j.record("model/a", "v1", 5, 9)
    j.close()
    with open(path, "a") as out:
        out.write('{"path": "model/a", "version": "v1", "st')  # killed mid-write
    again = Journal(path, "s3://b/m")
    assert sorted(again.done("model/a", "v1")) == [(0, 5), (5, 9)]
    assert again.done("model/b", "v1") == [] and again.done("model/a", "v2") == []
    again.close()


def test_a_journal_of_another_uri_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path, "s3://b/old")
    j.record("model/a", "v1", 0, 5)
    j.close()
    fresh = Journal(path, "s3://b/new")
    fresh.close()
    assert fresh.done("model/a", "v1") == []
    assert json.loads(path.read_text().splitlines()[0]) == {"uri": "s3://b/new"}


def test_the_package_imports_only_the_spec_common_and_itself() -> None:
    for module in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                if name.startswith("runtime_components."):
                    assert name.split(".")[1] in ("runtime", "common"), f"{module}: imports {name}"


def test_the_cli_does_not_load_boto3_or_urllib3_until_a_source_needs_it() -> None:
    code = "import sys, runtime_components.runtime.cli; print(sorted(m for m in ('boto3', 'urllib3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parents[1]).stdout
    assert out.strip() == "[]"  # a cache hit pays for neither
