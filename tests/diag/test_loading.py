"""Fault and config files: bad input is rejected with the file, line, column, path and a hint.

The whole rendered message is compared, so wording changes are reviewed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aibrix_spec.components.diag import DiagConfig, FaultFile
from runtime_components.diag.loading import DiagInputError, load_model, load_model_file

ERROR_CASES = [
    (
        "value-out-of-range",
        FaultFile,
        "gpus:\n  - index: 2\n    pcie: {currentWidth: 64}\n",
        "error: f.yaml:3:26: gpus[0].pcie.currentWidth\n"
        "  Input should be less than or equal to 32\n"
        "      3 |     pcie: {currentWidth: 64}\n"
        "        |                          ^\n",
    ),
    (
        "misspelt-field",
        FaultFile,
        "gpus:\n  - index: 1\n    temprature: {currentC: 90}\n",
        "error: f.yaml:3:5: gpus[0].temprature\n"
        "  unknown field `temprature`\n"
        "      3 |     temprature: {currentC: 90}\n"
        "        |     ^\n"
        "  hint: did you mean `temperature`?\n",
    ),
    (
        "unknown-clock-reason",
        FaultFile,
        "defaults:\n  clocksEventReasons: [hw-thermall]\n",
        "error: f.yaml:2:24: defaults.clocksEventReasons[0]\n"
        "  `hw-thermall` is not allowed here\n"
        "      2 |   clocksEventReasons: [hw-thermall]\n"
        "        |                        ^\n"
        "  hint: expected one of: 'gpu-idle', 'sw-power-cap', 'hw-slowdown', 'sw-thermal', 'hw-thermal' or "
        "'power-brake'\n",
    ),
    (
        "cross-field-rule",
        FaultFile,
        "gpuCount: 4\ngpus:\n  - index: 4\n",
        "error: f.yaml:3:12: gpus[0].index\n"
        "  gpus[0].index 4 is not below gpuCount 4\n"
        "      3 |   - index: 4\n"
        "        |            ^\n",
    ),
    (
        "missing-index",
        FaultFile,
        "gpus:\n  - lost: true\n",
        "error: f.yaml:2:5: gpus[0]\n  gpus[0] needs an `index` (0..7)\n      2 |   - lost: true\n        |     ^\n",
    ),
    (
        "duplicate-key",
        FaultFile,
        "gpuCount: 2\ngpuCount: 3\n",
        "error: f.yaml:2:1: gpuCount\n"
        "  duplicate key `gpuCount`\n"
        "      2 | gpuCount: 3\n"
        "        | ^\n"
        "  hint: keep one; YAML would silently use the last\n",
    ),
    (
        "yaml-syntax",
        FaultFile,
        "gpus: [\n",
        "error: f.yaml:2:1\n"
        "  YAML syntax error: expected the node content, but found '<stream end>'\n"
        "  hint: check indentation and quoting on this line\n",
    ),
    (
        "not-a-mapping",
        DiagConfig,
        "- 1\n",
        "error: f.yaml:1:1\n  expected a mapping of DiagConfig fields at the top\n      1 | - 1\n        | ^\n",
    ),
    (
        "config-two-errors-sorted-by-line",
        DiagConfig,
        "intervalSeconds: 0\nnode: {taintEfect: NoExecute}\n",
        "error: f.yaml:1:18: intervalSeconds\n"
        "  Input should be greater than 0\n"
        "      1 | intervalSeconds: 0\n"
        "        |                  ^\n"
        "error: f.yaml:2:8: node.taintEfect\n"
        "  unknown field `taintEfect`\n"
        "      2 | node: {taintEfect: NoExecute}\n"
        "        |        ^\n"
        "  hint: did you mean `taintEffect`?\n",
    ),
    (
        "config-power-fractions",
        DiagConfig,
        "thresholds:\n  powerWarnFraction: 1.2\n",
        "error: f.yaml:2:3: thresholds\n"
        "  powerFailFraction (1.1) must be above powerWarnFraction (1.2)\n"
        "      2 |   powerWarnFraction: 1.2\n"
        "        |   ^\n",
    ),
    (
        "inner-rule-points-at-the-field",
        FaultFile,
        "gpus:\n  - index: 1\n    nvlink: {links: 2, inactive: [5]}\n",
        "error: f.yaml:3:34: gpus[0].nvlink.inactive\n"
        "  inactive links [5] are outside 0..1\n"
        "      3 |     nvlink: {links: 2, inactive: [5]}\n"
        "        |                                  ^\n",
    ),
]


@pytest.mark.parametrize(("model", "text", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_input_is_rejected_with_the_line(model: type, text: str, expected: str) -> None:
    with pytest.raises(DiagInputError) as caught:
        load_model(text, model, source="f.yaml")
    assert caught.value.render() == expected


@pytest.mark.parametrize(("text", "gpu_count"), [("", 8), ("# nothing but a comment\n", 8), ("gpuCount: 2\n", 2)])
def test_empty_and_minimal_files_take_defaults(text: str, gpu_count: int) -> None:
    assert load_model(text, FaultFile, source="f.yaml").gpu_count == gpu_count


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DiagInputError) as caught:
        load_model_file(tmp_path / "absent.yaml", FaultFile)
    assert caught.value.render() == (
        f"error: {tmp_path / 'absent.yaml'}\n  cannot read the file: No such file or directory\n"
        "  hint: check the path (--config / --mock / AIBRIX_DIAG_MOCK)\n"
    )


def test_overrides_merge_field_by_field() -> None:
    faults = load_model(
        "defaults: {power: {limitW: 400, defaultLimitW: 400}}\ngpus: [{index: 1, power: {usageW: 10}}]\n",
        FaultFile,
        source="f.yaml",
    )
    power = faults.resolved_gpus()[1].power
    assert (power.usage_w, power.limit_w, power.default_limit_w) == (10, 400, 400)
