"""One download, end to end: lock, hit check, fetch, unpack, publish, evict.

Where it sits: ``cli`` parses the command line into a ``DownloadRequest`` and calls
``download``; everything that touches the network is in ``sources/`` and ``transfer``.

Publishing is atomic: files are fetched into the temporary sibling ``.<name>.partial/model/``,
verified, the completion marker is written into it, and only then is it renamed to ``<name>``.
A reader therefore sees either no model or a complete one. A destination holding a complete
model with a marker for the same URI is a hit: its last-used stamp is touched and nothing is
fetched. The per-model lock makes a second process on the node wait for the first, then find
the hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import cache
from .errors import UsageError
from .sources import SourceOptions, open_source
from .sources.base import RemoteFile
from .transfer import TransferStats, fetch_files
from .unpack import unpack

__all__ = ["DownloadRequest", "Outcome", "download", "read_marker"]


@dataclass(frozen=True)
class DownloadRequest:
    uri: str
    dest: Path
    cache_root: Path | None = None
    cache_max_bytes: int | None = None
    options: SourceOptions = field(default_factory=SourceOptions)
    chunk_bytes: int = 16 << 20
    progress_interval_s: float = 3.0


@dataclass(frozen=True)
class Outcome:
    hit: bool
    dest: Path
    stats: TransferStats | None = None
    evicted: list[cache.Evicted] = field(default_factory=list)


def read_marker(dest: Path) -> dict[str, object] | None:
    """The completion marker of ``dest``, or None when it is missing or unreadable."""
    try:
        data = json.loads((dest / cache.MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def download(req: DownloadRequest) -> Outcome:
    dest = _check_dest(req)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with cache.model_lock(dest):
        marker = read_marker(dest)
        if marker is not None and marker.get("uri") == req.uri:
            cache.touch(dest)
            return Outcome(hit=True, dest=dest)
        if marker is None and dest.is_dir() and any(dest.iterdir()):
            raise UsageError(
                "the destination holds files that aibrix-runtime did not publish",
                where=str(dest),
                hint="choose an empty or new folder (a published model there would be replaced whole)",
            )
        stats = _fetch_and_publish(req, dest)
    evicted = cache.evict(dest.parent, req.cache_max_bytes, keep=dest) if req.cache_max_bytes is not None else []
    return Outcome(hit=False, dest=dest, stats=stats, evicted=evicted)


def _check_dest(req: DownloadRequest) -> Path:
    dest = Path(os.path.abspath(req.dest))
    if dest.exists() and not dest.is_dir():
        raise UsageError("the destination exists and is not a folder", where=str(dest))
    if req.cache_root is not None:
        root = Path(os.path.abspath(req.cache_root))
        if dest.parent != root:
            raise UsageError(
                "--dest must be a folder directly inside --cache-root",
                where=str(dest),
                expected=f"{root}/<key>",
                hint="the compiler passes --dest <cache root>/<cache_key(uri)>",
            )
    if dest.name.startswith("."):
        raise UsageError("the destination's name must not start with '.' (the cache keeps its own files there)",
                         where=str(dest))
    return dest


def _fetch_and_publish(req: DownloadRequest, dest: Path) -> TransferStats:
    source = open_source(req.uri, req.options)
    try:
        files = source.list_files()
        work = cache.partial_path(dest)
        work.mkdir(exist_ok=True)
        _prune(work, files)
        stats = fetch_files(source, files, work, parallel=req.options.parallel, chunk_bytes=req.chunk_bytes,
                            progress_interval_s=req.progress_interval_s, durable=req.cache_root is not None)
    finally:
        source.close()
    model = work / "model"
    model.mkdir(exist_ok=True)
    for f in files:
        if f.unpack is not None:
            unpack(work / f.path, f.unpack, model, strip_top=getattr(source, "strip_top", False), where=f.key)
    _write_marker(model, req.uri, files, durable=req.cache_root is not None)
    _replace(dest, model)
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _prune(work: Path, files: list[RemoteFile]) -> None:
    """Delete what an earlier run left that is not a file of this listing (an object removed
    upstream since, a half-done unpack), so only this version's files can be published."""
    wanted = {f.path for f in files}
    for top in ("model", "archives"):
        for root, dirs, names in os.walk(work / top, topdown=False):
            for name in names:
                path = Path(root) / name
                if str(path.relative_to(work)) not in wanted:
                    path.unlink()
            for name in dirs:
                with contextlib.suppress(OSError):  # not empty: it holds wanted files
                    (Path(root) / name).rmdir()


def _write_marker(model: Path, uri: str, files: list[RemoteFile], *, durable: bool) -> None:
    published = sorted(
        (str(p.relative_to(model)), p.stat().st_size) for p in model.rglob("*") if p.is_file() and p.name != cache.MARKER
    )
    marker = {
        "uri": uri,
        "bytes": sum(size for _, size in published),
        "files": [{"path": path, "size": size} for path, size in published],
        "sources": [
            {"key": f.key, "size": f.size, "version": f.version,
             **({"checksum": f"{f.checksum.algorithm}:{f.checksum.hex}"} if f.checksum else {})}
            for f in files
        ],
    }
    path = model / cache.MARKER
    with open(path, "w", encoding="utf-8") as out:
        json.dump(marker, out, indent=1, sort_keys=True)
        out.write("\n")
        if durable:
            out.flush()
            os.fsync(out.fileno())
    if durable:
        _fsync_dir(model)


def _replace(dest: Path, model: Path) -> None:
    """Rename ``model`` to ``dest``; an incomplete or foreign ``dest`` is moved aside first."""
    if dest.exists():
        stale = dest.parent / f".{dest.name}.evicting-{os.getpid()}"
        os.rename(dest, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(model, dest)
    _fsync_dir(dest.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
