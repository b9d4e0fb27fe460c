"""The shared model cache: a lock per model, last-used stamps, least-recently-used eviction.

Layout of a cache root (and of any destination's parent folder, which works the same way)::

    ROOT/<key>/                      a published model; <key>/.aibrix-model.json marks it complete
    ROOT/.<key>.partial/             a download in progress (or interrupted: resumed next time)
    ROOT/.<key>.lock                 flock(2) target: one downloader of <key> at a time per node

The marker's mtime is the model's last-used stamp, touched on every hit. Eviction runs after a
publish: it removes the least-recently-used models (and abandoned partial downloads) until the
folder holds at most the byte budget, skipping the model just published and any whose lock
another process holds. A victim is renamed away before it is deleted, so no reader sees a
half-deleted model at its name. Lock files stay (tiny): deleting one could let two processes
hold "the" lock on different inodes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MARKER", "Evicted", "evict", "lock_path", "model_lock", "partial_path", "touch", "tree_bytes"]

MARKER = ".aibrix-model.json"


def lock_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.lock"


def partial_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.partial"


@contextmanager
def model_lock(dest: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock of ``dest``; yields False (not holding it) when ``wait`` is off and it is taken."""
    fd = os.open(lock_path(dest), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def touch(dest: Path) -> None:
    """Mark ``dest`` as used now (its marker's mtime)."""
    os.utime(dest / MARKER)


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # removed while we looked
            total += st.st_size
    return total


@dataclass(frozen=True)
class Entry:
    dest: Path  # the model's name in the cache (for a partial download: the name it will have)
    path: Path  # what is on disk
    used: float
    size: int


@dataclass(frozen=True)
class Evicted:
    name: str
    bytes: int


def _entries(root: Path) -> list[Entry]:
    out: list[Entry] = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.is_symlink():
            continue
        if child.name.startswith(".") and child.name.endswith(".partial"):
            dest = root / child.name[1 : -len(".partial")]
            used = child.stat().st_mtime
        elif not child.name.startswith(".") and (child / MARKER).is_file():
            dest = child
            used = (child / MARKER).stat().st_mtime
        else:
            continue  # not ours
        out.append(Entry(dest, child, used, tree_bytes(child)))
    return out


def evict(root: Path, max_bytes: int, keep: Path) -> list[Evicted]:
    """Remove least-recently-used models under ``root`` until it holds at most ``max_bytes``."""
    for leftover in root.glob(".*.evicting-*"):  # a victim whose deleter died: garbage by construction
        shutil.rmtree(leftover, ignore_errors=True)
    entries = _entries(root)
    total = sum(e.size for e in entries)
    evicted: list[Evicted] = []
    # oldest first; the name breaks ties so the order is deterministic
    for entry in sorted(entries, key=lambda e: (e.used, e.path.name)):
        if total <= max_bytes:
            break
        if entry.dest == keep:
            continue
        with model_lock(entry.dest, wait=False) as held:
            if not held or not entry.path.exists():
                continue  # another process is downloading or publishing it right now
            doomed = root / f".{entry.path.name.lstrip('.')}.evicting-{os.getpid()}"
            os.rename(entry.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        total -= entry.size
        evicted.append(Evicted(entry.path.name, entry.size))
    if total > max_bytes:
        print(f"aibrix-runtime: warning: the cache holds {total} bytes, over its budget of {max_bytes}, "
              "because the rest is in use or was just published", file=sys.stderr)
    return evicted
