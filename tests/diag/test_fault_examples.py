"""Every example fault file is detected exactly as its `# expect:` lines say, and nothing else.

Cases are discovered (one test per file in examples/faults, the test id is the file name), in
the style of black's data cases: adding a fault class means adding a file. The annotations are
read by the one parser, ``benchmarks.diag_cases``; `# expect:` (aibrix-diag's own results) must
also agree with `# truth:` (the detector-independent ground truth the benchmark scores against).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.diag_cases import FAULTS_DIR, FaultCase, FaultCaseError, Truth, load_cases, parse_case
from runtime_components.diag.session import CHECK_NAMES

from .helpers import problems, run_pass

CASES = load_cases()


def test_the_examples_exist() -> None:
    assert len(CASES) >= 20, f"examples/faults should hold every fault class, found {len(CASES)}"
    assert {c.truth.scope for c in CASES} == {"gpu", "node", "healthy", "no-nvml"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_file_is_detected_as_expected(case: FaultCase) -> None:
    report = run_pass(case.faults)
    if case.expect_no_nvml:
        assert (report.status, report.exit_code, report.results) == ("no-nvml", 3, ())
        return
    assert problems(report) == case.expect
    worst = max((status for _, _, status in case.expect), key=["ok", "warn", "fail"].index, default="ok")
    assert report.status == worst


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_expectations_agree_with_the_ground_truth(case: FaultCase) -> None:
    """aibrix-diag's expected results name only the faulty GPU (or the node), at the truth's severity."""
    truth = case.truth
    if not truth.is_fault:
        assert case.expect == frozenset()
        assert case.expect_no_nvml == (truth.scope == "no-nvml")
        assert truth.scope != "no-nvml" or case.faults.gpu_count == 0
        return
    wanted_gpu = truth.gpu if truth.scope == "gpu" else None
    assert case.expect and {gpu for _, gpu, _ in case.expect} == {wanted_gpu}
    assert max((s for _, _, s in case.expect), key=["warn", "fail"].index) == truth.severity
    assert truth.gpu is None or truth.gpu < case.faults.gpu_count


def test_every_check_and_severity_has_an_example() -> None:
    covered = {(check, status) for case in CASES for check, _, status in case.expect}
    # driver/warn and device-count/warn come from the config, not the node: see test_checks.py.
    wanted = {(check, status) for check in CHECK_NAMES for status in ("warn", "fail")} - {
        ("driver", "warn"),
        ("device-count", "warn"),
        ("device-access", "warn"),
        ("nvlink", "warn"),
    }
    assert wanted - covered == set()


BAD_ANNOTATIONS = [
    # (file text, expected message)
    ("# expect: none\nnode: n\n", "bad.yaml: expected exactly one `# truth:` line, found 0"),
    ("# truth: healthy\n# truth: healthy\n# expect: none\nnode: n\n",
     "bad.yaml: expected exactly one `# truth:` line, found 2"),
    ("# truth: gpu two fail\n# expect: none\nnode: n\n",
     "bad.yaml:1: cannot read `# truth: gpu two fail`; expected `# truth: gpu N warn|fail`, "
     "`# truth: node warn|fail`, `# truth: healthy` or `# truth: no-nvml`"),
    ("# truth: gpu 1 broken\n# expect: none\nnode: n\n",
     "bad.yaml:1: cannot read `# truth: gpu 1 broken`; expected `# truth: gpu N warn|fail`, "
     "`# truth: node warn|fail`, `# truth: healthy` or `# truth: no-nvml`"),
    ("# truth: healthy\n# expect: ecc bad gpu 1\nnode: n\n",
     "bad.yaml:2: cannot read `# expect: ecc bad gpu 1`; "
     "expected `# expect: CHECK warn|fail [gpu N]`, `# expect: none` or `# expect: no-nvml`"),
    ("# truth: healthy\nnode: n\n",
     "bad.yaml: no `# expect:` line; write `# expect: none` for a healthy node"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_ANNOTATIONS)
def test_bad_annotations_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FaultCaseError) as error:
        parse_case(path)
    assert str(error.value) == message


def test_annotations_parse_into_truth_and_expectations() -> None:
    case = parse_case(FAULTS_DIR / "thermal-slowdown.yaml")
    assert case.truth == Truth("gpu", 3, "fail")
    assert case.expect == {("temperature", 3, "fail"), ("clocks", 3, "fail")}
    assert parse_case(FAULTS_DIR / "gpu-fell-off-bus.yaml").truth == Truth("node", None, "fail")
