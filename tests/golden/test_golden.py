"""Golden tests: every example stack compiles to exactly its pinned files, and every error
case renders exactly its pinned message.

- ``tests/golden/<example>/expected/`` pins ``examples/stacks/<example>.yaml`` file by file
  (the layout of ``aibrix-compile -o DIR``). An example without a folder fails.
- ``tests/golden/errors/<behaviour>.yaml`` is black's single-file form: a one-line intent
  comment, the stack, a ``# expected-error`` line, then the exact stderr text.
- Invariants, as black checks them: compiling twice gives identical bytes; the defaults
  pass's output compiles to the same files; every object validates (kubernetes-validate
  strict for the target version; custom resources against the vendored CRDs).

Rewrite expectations with ``python -m pytest tests/golden --update-golden`` and review the
git diff.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml

from compiler import SpecError, compile_stack, render_diagnostics
from compiler.kube_version import NEWEST, OLDEST, format_version
from compiler.outdir import read_tree, write_tree
from compiler.pipeline import resolve_stack
from compiler.serialize import KUSTOMIZATION

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
EXAMPLES = sorted((REPO / "examples" / "stacks").glob("*.yaml"))
ERROR_CASES = sorted((GOLDEN / "errors").glob("*.yaml"))
MARKER = "# expected-error\n"
UPDATE = "python -m pytest tests/golden --update-golden"


def _compile(example: Path) -> dict[str, str]:
    return compile_stack(example.read_text(encoding="utf-8"), source_name=f"examples/stacks/{example.name}")


def _tree_diff(expected: dict[str, str], actual: dict[str, str]) -> str:
    out = []
    for rel in sorted(set(expected) | set(actual)):
        if expected.get(rel) == actual.get(rel):
            continue
        if rel not in actual:
            out.append(f"extra file in golden folder (no longer produced): {rel}\n")
        elif rel not in expected:
            out.append(f"missing golden file: {rel}\n")
        out += difflib.unified_diff(
            (expected.get(rel) or "").splitlines(keepends=True),
            (actual.get(rel) or "").splitlines(keepends=True),
            fromfile=f"expected/{rel}",
            tofile=f"actual/{rel}",
        )
    return "".join(out)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_golden(example: Path, update_golden: bool) -> None:
    actual = _compile(example)
    expected_dir = GOLDEN / example.stem / "expected"
    if update_golden:
        write_tree(expected_dir, actual)
        return
    expected = read_tree(expected_dir) if expected_dir.is_dir() else {}
    diff = _tree_diff(expected, actual)
    assert not diff, f"{example.name} no longer compiles to its golden files; if intended run: {UPDATE}\n{diff}"


def test_every_golden_folder_has_an_example() -> None:
    folders = {p.name for p in GOLDEN.iterdir() if p.is_dir() and (p / "expected").is_dir()}
    assert folders == {e.stem for e in EXAMPLES}, "each examples/stacks/<name>.yaml needs tests/golden/<name>/"


def test_examples_exist_and_start_with_the_schema_modeline() -> None:
    assert {"quickstart", "heterogeneous"} <= {e.stem for e in EXAMPLES}
    for example in EXAMPLES:
        first = example.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../schemas/inferencestack.schema.json", example.name


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_compiling_twice_gives_identical_bytes(example: Path) -> None:
    assert _compile(example) == _compile(example)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_defaults_output_compiles_to_the_same_files(example: Path) -> None:
    _doc, resolved = resolve_stack(example.read_text(encoding="utf-8"), source_name=example.name)
    redumped = yaml.safe_dump(resolved.filled.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=False)
    assert compile_stack(redumped, source_name="resolved.yaml") == _compile(example)


@pytest.mark.parametrize("kube_version", [format_version(OLDEST), format_version(NEWEST)])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_object_passes_strict_validation(example: Path, kube_version: str) -> None:
    pytest.importorskip("kubernetes_validate")
    from compiler.output_check import check_objects

    files = compile_stack(example.read_text(encoding="utf-8"), source_name=example.name, kube_version=kube_version)
    objects = [yaml.safe_load(text) for rel, text in files.items() if rel != KUSTOMIZATION]
    assert check_objects(objects, kube_version=kube_version, crd_dir=None) == []


def _split_case(path: Path) -> tuple[str, str]:
    text = path.read_text(encoding="utf-8")
    assert MARKER in text, f"{path.name}: no '# expected-error' line"
    stack, expected = text.split(MARKER, 1)
    return stack, expected


def _render_error(stack: str, name: str) -> str:
    try:
        compile_stack(stack, source_name=name)
    except SpecError as exc:
        return render_diagnostics(exc.diagnostics, source_name=name, text=stack)
    return "(compiled without error)\n"


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda p: p.stem)
def test_error_case_renders_exact_message(case: Path, update_golden: bool) -> None:
    stack, expected = _split_case(case)
    assert stack.startswith("# "), f"{case.name}: open with a one-line intent comment"
    actual = _render_error(stack, case.name)
    if update_golden:
        case.write_text(stack + MARKER + actual, encoding="utf-8")
        return
    assert actual == expected, f"{case.name}: the message changed; if intended run: {UPDATE}\n" + "".join(
        difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "expected", "actual")
    )


def test_there_are_at_least_twenty_error_cases() -> None:
    assert len(ERROR_CASES) >= 20


def test_update_writes_into_an_empty_folder(tmp_path: Path) -> None:
    # The update path must also create folders for new examples.
    files = _compile(EXAMPLES[0])
    write_tree(tmp_path / "new" / "expected", files)
    assert read_tree(tmp_path / "new" / "expected") == files
    shutil.rmtree(tmp_path / "new")
