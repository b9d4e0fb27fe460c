"""Every example fault file is detected exactly as its `# expect:` lines say, and nothing else.

Cases are discovered (one test per file in examples/faults, the test id is the file name), in
the style of black's data cases: adding a fault class means adding a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aibrix_spec.components.diag import FaultFile
from runtime_components.diag.loading import load_model_file
from runtime_components.diag.session import CHECK_NAMES

from .helpers import FAULTS_DIR, problems, run_pass

CASES = sorted(FAULTS_DIR.glob("*.yaml"))


def expectations(path: Path) -> tuple[str | None, set[tuple[str, int | None, str]]]:
    """('no-nvml' or None, {(check, gpu, status)}) from the file's `# expect:` lines."""
    state, expected = None, set()
    for line in path.read_text().splitlines():
        if not line.startswith("# expect:"):
            continue
        words = line.removeprefix("# expect:").split()
        if words == ["none"]:
            continue
        if words == ["no-nvml"]:
            state = "no-nvml"
            continue
        check, status, *rest = words
        gpu = int(rest[1]) if rest[:1] == ["gpu"] else None
        expected.add((check, gpu, status))
    return state, expected


def test_the_examples_exist() -> None:
    assert len(CASES) >= 20, f"examples/faults should hold every fault class, found {len(CASES)}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fault_file_is_detected_as_expected(path: Path) -> None:
    assert any(line.startswith("# expect:") for line in path.read_text().splitlines()), f"{path.name} has no # expect"
    state, expected = expectations(path)
    report = run_pass(load_model_file(path, FaultFile))
    if state == "no-nvml":
        assert (report.status, report.exit_code, report.results) == ("no-nvml", 3, ())
        return
    assert problems(report) == expected
    worst = max((status for _, _, status in expected), key=["ok", "warn", "fail"].index, default="ok")
    assert report.status == worst


def test_every_check_and_severity_has_an_example() -> None:
    covered = set()
    for path in CASES:
        covered |= {(check, status) for check, _, status in expectations(path)[1]}
    # driver/warn and device-count/warn come from the config, not the node: see test_checks.py.
    wanted = {(check, status) for check in CHECK_NAMES for status in ("warn", "fail")} - {
        ("driver", "warn"),
        ("device-count", "warn"),
        ("device-access", "warn"),
        ("nvlink", "warn"),
    }
    assert wanted - covered == set()
