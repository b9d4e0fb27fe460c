"""Fault injection settings of one simulated engine, and their text/JSON forms.

Where it sits: ``server.EngineServer`` applies a ``Faults`` value; it is set at start
(``aibrix-engine-sim --fault 3:error_rate=0.5``) or at run time through the engine's
``POST /admin/faults`` (JSON body with the same keys). What each fault does:

- ``slowdown``: every engine step takes this many times longer (a throttled GPU);
- ``error_rate``: this fraction of generation requests is answered 500 at once (seeded);
- ``hang``: every request except ``/admin/*`` is held without an answer until cleared;
- ``crash``: the engine stops listening (connections refused) and drops in-flight work;
  only the process (``EngineCluster.restart``) brings it back;
- ``metrics``: ``"ok"``, ``"stale"`` (``/metrics`` keeps answering the snapshot taken when
  the fault was set) or ``"missing"`` (``/metrics`` answers 404).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Faults", "parse_fault_spec", "METRICS_MODES"]

METRICS_MODES = ("ok", "stale", "missing")


@dataclass(frozen=True)
class Faults:
    slowdown: float = 1.0
    error_rate: float = 0.0
    hang: bool = False
    crash: bool = False
    metrics: str = "ok"

    def __post_init__(self) -> None:
        if self.slowdown < 1.0:
            raise ValueError(f"slowdown must be >= 1 (a factor on step time), got {self.slowdown}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")
        if self.metrics not in METRICS_MODES:
            raise ValueError(f"metrics must be one of {', '.join(METRICS_MODES)}, got {self.metrics!r}")

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` (JSON values) applied; unknown keys and bad types are errors."""
        known = {f.name: f.type for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; expected: {', '.join(known)}")
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            current = getattr(self, key)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"fault {key} must be true or false, got {value!r}")
            elif isinstance(current, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"fault {key} must be a number, got {value!r}")
                value = float(value)
            elif not isinstance(value, str):
                raise ValueError(f"fault {key} must be a string, got {value!r}")
            clean[key] = value
        return dataclasses.replace(self, **clean)


def _scalar(key: str, text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def parse_fault_spec(spec: str) -> tuple[int, dict[str, Any]]:
    """Parse ``INDEX:key=value,key=value`` (from the CLI) into the engine index and changes.

    >>> parse_fault_spec("2:slowdown=3,metrics=stale")
    (2, {'slowdown': 3.0, 'metrics': 'stale'})
    """
    index_text, sep, rest = spec.partition(":")
    if not sep or not index_text.strip().isdigit() or not rest:
        raise ValueError(f"bad fault spec {spec!r}; expected INDEX:key=value[,key=value] such as 0:error_rate=0.5")
    changes: dict[str, Any] = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"bad fault spec {spec!r}: {item!r} is not key=value")
        changes[key.strip()] = _scalar(key, value.strip())
    Faults().updated(changes)  # validate now, so the CLI reports it before starting
    return int(index_text), changes
