"""A file's change stamp, for components that re-read a mounted file when it changes.

Where it sits: the gateway's static discovery (endpoints file) and its users file (a mounted
Secret) poll their files and reload when the stamp moves. The stamp is
``(st_mtime_ns, st_size)``: nanosecond mtime catches quick rewrites on file systems with
fine timestamps, and the size catches a rewrite within one coarse timestamp tick (a
Kubernetes Secret update swaps a symlink, which also moves the mtime).
"""

from __future__ import annotations

import os

__all__ = ["FileStamp", "file_stamp"]

FileStamp = tuple[int, int]


def file_stamp(path: str | os.PathLike[str]) -> FileStamp:
    """``(mtime_ns, size)`` of ``path``; raises OSError when it cannot be examined."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size
