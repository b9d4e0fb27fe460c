"""`gpu_fault_effect`: what a GPU's fault state does to the engine on it (the documented model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aibrix_spec.components.diag import FaultFile, GpuState
from runtime_components.engine_sim.gpu_effect import gpu_fault_effect

FAULTS_DIR = Path(__file__).resolve().parents[2] / "examples" / "faults"

CASES: list[tuple[str, dict[str, Any], float, float, bool]] = [
    # id, GPU state, slowdown factor, error rate, crashed
    ("healthy", {}, 1.0, 0.0, False),
    ("fell-off-bus", {"visible": False}, 1.0, 1.0, True),
    ("lost", {"lost": True}, 1.0, 1.0, True),
    ("fatal-xid", {"xidEvents": [79]}, 1.0, 1.0, True),
    ("remap-failed", {"remappedRows": {"failed": True}}, 1.0, 1.0, True),
    ("at-shutdown-temperature", {"temperature": {"currentC": 92}}, 1.0, 1.0, True),
    ("hw-thermal", {"clocksEventReasons": ["hw-thermal"]}, 2.0, 0.0, False),
    ("power-brake", {"clocksEventReasons": ["power-brake"]}, 2.0, 0.0, False),
    ("at-slowdown-temperature", {"temperature": {"currentC": 88}}, 2.0, 0.0, False),
    ("sw-thermal", {"clocksEventReasons": ["sw-thermal"]}, 1.25, 0.0, False),
    ("power-capped", {"clocksEventReasons": ["sw-power-cap"]}, 1.1, 0.0, False),
    # 9 of 18 links: r = 0.5 -> 1 + 0.1 * (2 - 1)
    ("half-the-nvlinks", {"nvlink": {"inactive": list(range(9))}}, 1.1, 0.0, False),
    # every link down: falls back to PCIe, r = 0.1 -> 1 + 0.1 * 9
    ("all-nvlinks-down", {"nvlink": {"links": 2, "inactive": [0, 1]}}, 1.9, 0.0, False),
    # a PCIe GPU at x8 of x16: r = 0.5
    ("pcie-gpu-narrow-link", {"nvlink": {"links": 0}, "pcie": {"currentWidth": 8}}, 1.1, 0.0, False),
    # an idle GPU's generation downshift is not a fault
    (
        "pcie-gpu-idle-downshift",
        {"nvlink": {"links": 0}, "pcie": {"currentGeneration": 1}, "clocksEventReasons": ["gpu-idle"]},
        1.0,
        0.0,
        False,
    ),
    (
        "hw-slowdown-and-narrow-nvlink",
        {"clocksEventReasons": ["hw-slowdown"], "nvlink": {"inactive": list(range(9))}},
        2.2,
        0.0,
        False,
    ),
    ("uncorrected-ecc", {"ecc": {"uncorrectedVolatile": 3, "uncorrectedAggregate": 3}}, 1.0, 0.06, False),
    ("non-fatal-xids", {"xidEvents": [13, 31]}, 1.0, 0.04, False),
    ("error-rate-is-capped", {"xidEvents": [13] * 40}, 1.0, 0.5, False),
]


@pytest.mark.parametrize(
    ("state", "slowdown", "error_rate", "crashed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_effect(state: dict[str, Any], slowdown: float, error_rate: float, crashed: bool) -> None:
    effect = gpu_fault_effect(GpuState.model_validate(state))
    assert (effect.slowdown_factor, effect.error_rate, effect.crashed) == pytest.approx((slowdown, error_rate, crashed))
    assert bool(effect.reasons) == (slowdown > 1.0 or error_rate > 0.0 or crashed)


def test_fatal_xids_are_configurable() -> None:
    state = GpuState(xid_events=[13])
    assert gpu_fault_effect(state, fatal_xids=(13,)).crashed


def test_every_example_fault_file_resolves() -> None:
    for path in sorted(FAULTS_DIR.glob("*.yaml")):
        faults = FaultFile.model_validate(yaml.safe_load(path.read_text()))
        effects = [gpu_fault_effect(gpu) for gpu in faults.resolved_gpus()]
        assert len(effects) == faults.gpu_count, path.name
