"""The target Kubernetes version: parsing ``--kube-version`` / ArgoCD's ``KUBE_VERSION``.

Accepts ``1.31``, ``v1.31.2``, ``1.31.2+k3s1`` or ``v1.31.0-gke.1``; only major.minor
matter. Supported targets are the versions whose API the emitted objects use and whose
schemas the strict output validation ships: 1.25 (policy/v1 PDB and autoscaling/v2 HPA
are GA everywhere) up to :data:`NEWEST`.

A version newer than :data:`NEWEST` compiles with :data:`NEWEST`'s rules, and the command
line prints :func:`newer_than_known`'s warning: the ArgoCD plugin passes the cluster's
version, and an upgraded cluster must not stop every application from syncing. Only
versions older than :data:`OLDEST` are refused.
"""

from __future__ import annotations

import re

from .errors import UsageError

__all__ = ["DEFAULT_KUBE_VERSION", "NEWEST", "OLDEST", "format_version", "newer_than_known", "parse_kube_version"]

OLDEST = (1, 25)
NEWEST = (1, 37)
DEFAULT_KUBE_VERSION = "1.37"

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?([-+][0-9A-Za-z.+-]*)?$")


def format_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _read(text: str) -> tuple[int, int]:
    match = _VERSION.match(text.strip()) if len(text) <= 64 else None
    if not match:
        shown = text if len(text) <= 64 else text[:61] + "..."
        raise UsageError(
            f'--kube-version "{shown}" is not a Kubernetes version; expected MAJOR.MINOR such as '
            f"{DEFAULT_KUBE_VERSION} (a v prefix and a patch or build suffix are fine)"
        )
    version = (int(match.group(1)), int(match.group(2)))
    if version < OLDEST:
        raise UsageError(
            f"--kube-version {format_version(version)} is not supported; expected "
            f"{format_version(OLDEST)} or newer"
        )
    return version


def parse_kube_version(text: str) -> tuple[int, int]:
    """``"v1.31.2+k3s1"`` -> ``(1, 31)``; newer than NEWEST -> NEWEST; UsageError when unreadable or too old."""
    return min(_read(text), NEWEST)


def newer_than_known(text: str) -> str | None:
    """The warning to print when ``text`` is newer than the newest version known, else None."""
    version = _read(text)
    if version <= NEWEST:
        return None
    return (
        f"warning: --kube-version {format_version(version)} is newer than the newest version this "
        f"aibrix-compile knows ({format_version(NEWEST)}); compiling with {format_version(NEWEST)}'s rules. "
        "Upgrade aibrix-compile to use what is new."
    )
