"""The target Kubernetes version: parsing ``--kube-version`` / ArgoCD's ``KUBE_VERSION``.

Accepts ``1.31``, ``v1.31.2``, ``1.31.2+k3s1`` or ``v1.31.0-gke.1``; only major.minor
matter. Supported targets are the versions whose API the emitted objects use and whose
schemas the strict output validation ships: 1.25 (policy/v1 PDB and autoscaling/v2 HPA
are GA everywhere) up to :data:`NEWEST`.
"""

from __future__ import annotations

import re

from .errors import UsageError

__all__ = ["DEFAULT_KUBE_VERSION", "NEWEST", "OLDEST", "format_version", "parse_kube_version"]

OLDEST = (1, 25)
NEWEST = (1, 37)
DEFAULT_KUBE_VERSION = "1.37"

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?([-+][0-9A-Za-z.+-]*)?$")


def format_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def parse_kube_version(text: str) -> tuple[int, int]:
    """``"v1.31.2+k3s1"`` -> ``(1, 31)``; UsageError for anything else or out of range."""
    match = _VERSION.match(text.strip())
    if not match:
        raise UsageError(
            f'--kube-version "{text}" is not a Kubernetes version; expected MAJOR.MINOR such as '
            f"{DEFAULT_KUBE_VERSION} (a v prefix and a patch or build suffix are fine)"
        )
    version = (int(match.group(1)), int(match.group(2)))
    if not OLDEST <= version <= NEWEST:
        raise UsageError(
            f"--kube-version {format_version(version)} is not supported; expected "
            f"{format_version(OLDEST)} to {format_version(NEWEST)}"
        )
    return version
