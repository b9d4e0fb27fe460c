"""Profile files and lookups: max request rate per replica meeting the SLO per token-bucket cell.

A profile (``aibrix_spec.components.optimizer.GpuProfile``) covers one model on one
accelerator with ``gpusPerReplica`` GPUs. Lookups round a workload cell *up* to the nearest
profiled bucket on each axis: longer requests are never cheaper to serve, so the rate of the
larger cell is a safe (lower) bound. This lets a coarse profile grid (every other power of
two) serve the full grid. A cell beyond the profile's largest bucket has rate 0 (unservable).
Which length inside a bucket was measured is the profile's ``requestTokens``
(``representative_tokens``).
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from aibrix_spec.components.optimizer import GpuProfile, SloTargets
from runtime_components.optimizer.errors import InputFileError
from runtime_components.optimizer.files import load_model

__all__ = [
    "ProfileKey",
    "ProfileSet",
    "rate_of",
    "representative_tokens",
    "load_profile",
    "save_profile",
    "load_profile_dir",
]

ProfileKey = tuple[str, str, int]  # (model, accelerator, gpus per replica)


def rate_of(profile: GpuProfile, input_bucket: int, output_bucket: int) -> float:
    """Max requests/s per replica for a cell, rounding each bucket up to the profiled grid."""
    i = bisect.bisect_left(profile.input_buckets, input_bucket)
    j = bisect.bisect_left(profile.output_buckets, output_bucket)
    if i == len(profile.input_buckets) or j == len(profile.output_buckets):
        return 0.0
    return profile.max_rps[i][j]


def representative_tokens(buckets: list[int] | tuple[int, ...], index: int, mode: str) -> int:
    """The token count a profile measures for ``buckets[index]``.

    ``upper``: the bucket's upper bound (every request in the cell is at most this long).
    ``geometric``: ``sqrt(lo * hi)`` of the range the bucket covers in *this* grid, where
    ``hi`` is the bucket and ``lo`` one more than the previous profiled bucket (cells round
    up to it), or ``hi / 2 + 1`` for the first one: the middle of a log-uniform spread.
    """
    hi = buckets[index]
    if mode == "upper":
        return hi
    if mode != "geometric":
        raise ValueError(f"unknown request-token mode {mode!r}; expected 'upper' or 'geometric'")
    lo = buckets[index - 1] + 1 if index > 0 else hi // 2 + 1
    return max(1, round(math.sqrt(lo * hi)))


def load_profile(path: str | Path) -> GpuProfile:
    return load_model(path, GpuProfile, what="GPU profile")


def save_profile(profile: GpuProfile, path: str | Path) -> None:
    """Write a profile as indented JSON with camelCase keys (the documented format)."""
    Path(path).write_text(json.dumps(profile.model_dump(by_alias=True), indent=1) + "\n", encoding="utf-8")


@dataclass
class ProfileSet:
    """Profiles by (model, accelerator, gpus per replica), with the file each came from."""

    profiles: dict[ProfileKey, GpuProfile] = field(default_factory=dict)
    origins: dict[ProfileKey, str] = field(default_factory=dict)

    def add(self, profile: GpuProfile, origin: str) -> None:
        key = (profile.model, profile.accelerator, profile.gpus_per_replica)
        if key in self.profiles:
            raise InputFileError(
                origin,
                f"second profile for model {key[0]!r} on {key[1]} x{key[2]} (first in {self.origins[key]})",
                hint="keep one profile file per model x accelerator x gpusPerReplica",
            )
        self.profiles[key] = profile
        self.origins[key] = origin

    def get(self, model: str, accelerator: str, gpus_per_replica: int) -> GpuProfile | None:
        return self.profiles.get((model, accelerator, gpus_per_replica))

    def check_slo(self, key: ProfileKey, slo: SloTargets) -> None:
        """A profile made for another SLO would give wrong capacities: refuse it."""
        profile = self.profiles[key]
        if profile.slo != slo:
            raise InputFileError(
                self.origins[key],
                f"profile for {key[0]!r} on {key[1]} was made for SLO {_slo_text(profile.slo)}, "
                f"but the config asks for {_slo_text(slo)}",
                hint="re-run `aibrix-optimize derive` or `aibrix-optimize profile` with the config's SLO",
            )


def _slo_text(slo: SloTargets) -> str:
    parts = []
    if slo.ttft_p99_ms is not None:
        parts.append(f"ttftP99Ms={slo.ttft_p99_ms:g}")
    if slo.tpot_p99_ms is not None:
        parts.append(f"tpotP99Ms={slo.tpot_p99_ms:g}")
    return ", ".join(parts)


def load_profile_dir(paths: list[str | Path]) -> ProfileSet:
    """Load profile files; a directory contributes every *.json / *.yaml file in it (sorted)."""
    result = ProfileSet()
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".json", ".yaml", ".yml"))
        elif p.exists():
            files = [p]
        else:
            raise InputFileError(str(p), "profile file or folder not found", hint="check the path")
        for f in files:
            result.add(load_profile(f), str(f))
    return result
