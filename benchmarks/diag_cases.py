"""The example fault files (examples/faults/*.yaml) and their annotations, parsed in one place.

Each file opens with comment lines the loader ignores and this module reads:

    # truth: gpu 2 fail          ground truth, written from the fault itself and naming no
                                 detector's checks: which GPU is faulty and what an operator must do
                                 (`fail`: take it out of service; `warn`: keep serving, look at it)
    # truth: node fail           no single GPU can be named (driver not loaded, a GPU that fell off
                                 the bus and left the others renumbered): only the node can be flagged
    # truth: healthy             nothing is wrong: any flag is a false positive
    # truth: no-nvml             no NVML at all (a CPU node): a state, not a fault; nothing to detect
    # expect: nvlink fail gpu 2  aibrix-diag's own results in its check names (`# expect: none`,
                                 `# expect: no-nvml`): its regression test compares them exactly

The benchmark scores every detector against `truth` only; `expect` is aibrix-diag's regression
spec and is checked to agree with `truth` (tests/diag/test_fault_examples.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aibrix_spec.components.diag import FaultFile
from runtime_components.diag.loading import load_model_file

__all__ = ["FAULTS_DIR", "FaultCase", "FaultCaseError", "Truth", "load_cases", "parse_case"]

FAULTS_DIR = Path(__file__).resolve().parents[1] / "examples" / "faults"

Scope = Literal["gpu", "node", "healthy", "no-nvml"]
Severity = Literal["warn", "fail"]
Expected = tuple[str, int | None, str]  #: (check, gpu or None for the node, status)


class FaultCaseError(ValueError):
    """A fault file's annotation lines are missing or malformed."""


@dataclass(frozen=True)
class Truth:
    """What is really wrong with the node, whoever looks at it."""

    scope: Scope
    gpu: int | None = None  #: the faulty GPU, for scope "gpu"
    severity: Severity | None = None  #: for scopes "gpu" and "node"

    @property
    def is_fault(self) -> bool:
        return self.scope in ("gpu", "node")


@dataclass(frozen=True)
class FaultCase:
    """One example fault file: the mock-up, its ground truth and aibrix-diag's expected results."""

    name: str
    faults: FaultFile
    truth: Truth
    expect: frozenset[Expected]  #: aibrix-diag's non-ok results
    expect_no_nvml: bool  #: aibrix-diag must report the no-nvml state


def _truth(words: list[str], where: str) -> Truth:
    hint = "expected `# truth: gpu N warn|fail`, `# truth: node warn|fail`, `# truth: healthy` or `# truth: no-nvml`"
    match words:
        case ["healthy"] | ["no-nvml"]:
            return Truth(words[0])  # type: ignore[arg-type]
        case ["node", ("warn" | "fail") as severity]:
            return Truth("node", None, severity)  # type: ignore[arg-type]
        case ["gpu", index, ("warn" | "fail") as severity] if index.isdigit():
            return Truth("gpu", int(index), severity)  # type: ignore[arg-type]
    raise FaultCaseError(f"{where}: cannot read `# truth: {' '.join(words)}`; {hint}")


def _expect(words: list[str], where: str) -> Expected:
    match words:
        case [check, ("warn" | "fail") as status]:
            return (check, None, status)
        case [check, ("warn" | "fail") as status, "gpu", index] if index.isdigit():
            return (check, int(index), status)
    raise FaultCaseError(
        f"{where}: cannot read `# expect: {' '.join(words)}`; "
        "expected `# expect: CHECK warn|fail [gpu N]`, `# expect: none` or `# expect: no-nvml`"
    )


def parse_case(path: Path) -> FaultCase:
    """Read one fault file: its mock-up (validated) and its `# truth:` / `# expect:` lines."""
    truths: list[Truth] = []
    expect: set[Expected] = set()
    no_nvml = saw_expect = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path.name}:{number}"
        if line.startswith("# truth:"):
            truths.append(_truth(line.removeprefix("# truth:").split(), where))
        elif line.startswith("# expect:"):
            saw_expect = True
            words = line.removeprefix("# expect:").split()
            if words == ["no-nvml"]:
                no_nvml = True
            elif words != ["none"]:
                expect.add(_expect(words, where))
    if len(truths) != 1:
        raise FaultCaseError(f"{path.name}: expected exactly one `# truth:` line, found {len(truths)}")
    if not saw_expect:
        raise FaultCaseError(f"{path.name}: no `# expect:` line; write `# expect: none` for a healthy node")
    return FaultCase(path.stem, load_model_file(path, FaultFile), truths[0], frozenset(expect), no_nvml)


def load_cases(directory: Path = FAULTS_DIR) -> list[FaultCase]:
    """Every fault file of ``directory``, sorted by name."""
    return [parse_case(path) for path in sorted(directory.glob("*.yaml"))]
