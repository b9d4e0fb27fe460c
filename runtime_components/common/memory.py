"""Resident memory of a process, for tests and benchmarks that bound what a server spends.

Linux only (``/proc/<pid>/status``, field VmRSS); elsewhere ``rss_bytes`` returns None and
callers skip the measurement.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["rss_bytes"]


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes, or None where /proc is not available."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None
