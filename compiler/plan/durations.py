"""Spec durations in seconds (one parser for every plan module)."""

from __future__ import annotations

__all__ = ["duration_seconds"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a spec Duration (``300s``, ``5m``, ``250ms``, ``1h``); the spec's pattern
    guarantees the shape."""
    unit = "ms" if text.endswith("ms") else text[-1]
    return int(text[: -len(unit)]) * _UNIT_SECONDS[unit]
