"""Parallel ranged reads into partial files, resumable, verified.

Where it sits: ``download`` hands it a source, its file list and the working directory (the
temporary sibling of the destination). Every file is cut into byte ranges of ``chunk_bytes``;
one thread pool of ``parallel`` workers reads ranges of all files at once (large files by range,
small files side by side) and writes each piece at its offset (``os.pwrite``), then records
that piece in the journal (so a kill loses at most one piece per worker). What an earlier run
recorded for the same object version is not fetched again.
A range that fails with a ``NetworkError`` is retried from the byte it reached, with backoff.
When a file's last range lands it is verified on a second small pool while the others keep
downloading: size always, then MD5 or SHA-256 when the source gave one; then fsynced. A file
that fails verification is dropped from the journal and deleted, and the run fails with exit 4.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ChecksumError, DownloadError, NetworkError
from .journal import Journal, missing_ranges
from .progress import Progress
from .sources.base import RemoteFile, Source

__all__ = ["TransferStats", "fetch_files"]

HASH_BLOCK = 4 << 20


@dataclass(frozen=True)
class TransferStats:
    total_bytes: int
    fetched_bytes: int
    reused_bytes: int
    files: int
    seconds: float


def fetch_files(
    source: Source,
    files: list[RemoteFile],
    workdir: Path,
    *,
    parallel: int,
    chunk_bytes: int,
    retries: int = 4,
    backoff_s: float = 0.5,
    progress_interval_s: float = 3.0,
    durable: bool = True,
) -> TransferStats:
    """Fetch every file into ``workdir`` (resuming from its journal) and verify it; ``durable``
    fsyncs each verified file (a shared cache outlives the pod; an emptyDir does not)."""
    journal = Journal(workdir / "journal.jsonl", source.uri)
    try:
        plan: dict[str, list[tuple[int, int | None]]] = {}
        reused = 0
        for f in files:
            plan[f.path], kept = _prepare(workdir / f.path, f, journal, chunk_bytes)
            reused += kept
        total = sum(f.size or 0 for f in files)
        with Progress(total, reused, interval_s=progress_interval_s) as progress:
            _run(source, files, plan, workdir, journal, progress, parallel, retries, backoff_s, durable)
            return TransferStats(total, progress.fetched, reused, len(files), progress.elapsed_s())
    finally:
        journal.close()


def _prepare(target: Path, f: RemoteFile, journal: Journal, chunk: int) -> tuple[list[tuple[int, int | None]], int]:
    """The ranges still to fetch for ``f`` and the bytes kept from an earlier run."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if f.size is None or not f.ranged:
        target.write_bytes(b"")
        return [(0, None)], 0
    done = journal.done(f.path, f.version)
    if not done or not target.exists():
        done = []
        with open(target, "wb") as out:  # a fresh (or another version's) file starts empty
            out.truncate(f.size)
    todo = missing_ranges(f.size, done, chunk)
    return [(s, e) for s, e in todo], f.size - sum(e - s for s, e in todo)


def _run(source: Source, files: list[RemoteFile], plan: dict[str, list[tuple[int, int | None]]], workdir: Path,
         journal: Journal, progress: Progress, parallel: int, retries: int, backoff_s: float, durable: bool) -> None:
    by_path = {f.path: f for f in files}
    remaining = {path: len(ranges) for path, ranges in plan.items()}
    readers = cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="range")
    checkers = cf.ThreadPoolExecutor(max_workers=max(1, min(4, parallel // 2)), thread_name_prefix="verify")
    pending: dict[cf.Future[None], str] = {}
    try:
        for path, ranges in plan.items():
            for start, end in ranges:
                fut = readers.submit(_fetch_range, source, by_path[path], workdir / path, start, end,
                                     journal, progress, retries, backoff_s)
                pending[fut] = path
        for path, count in remaining.items():
            if count == 0:  # complete from an earlier run: verify only
                pending[checkers.submit(_verify, source, by_path[path], workdir / path, journal, durable)] = ""
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                path = pending.pop(fut)
                fut.result()  # raises the first failure: the finally below cancels the rest
                if path:
                    remaining[path] -= 1
                    if remaining[path] == 0:
                        pending[checkers.submit(_verify, source, by_path[path], workdir / path, journal, durable)] = ""
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        checkers.shutdown(wait=True, cancel_futures=True)


def _fetch_range(source: Source, f: RemoteFile, target: Path, start: int, end: int | None, journal: Journal,
                 progress: Progress, retries: int, backoff_s: float) -> None:
    fd = os.open(target, os.O_WRONLY)
    try:
        offset = start
        for attempt in range(retries + 1):
            try:
                for piece in source.read(f, offset, end):
                    if end is not None and offset + len(piece) > end:
                        raise ChecksumError(f"the source sent more bytes than the range {start}-{end} asked for",
                                            where=f.key, expected=f"{f.size} bytes in all")
                    os.pwrite(fd, piece, offset)
                    if end is not None:
                        journal.record(f.path, f.version, offset, offset + len(piece))
                    offset += len(piece)
                    progress.add(len(piece))
                if end is not None and offset < end:
                    raise NetworkError(f"the connection ended at byte {offset} of the range {start}-{end}", where=f.key)
                break
            except NetworkError:
                if attempt == retries:
                    raise
                time.sleep(backoff_s * 2**attempt)
                if end is None:  # an unranged stream restarts from the beginning
                    os.ftruncate(fd, 0)
                    progress.add(-offset)
                    offset = 0
    finally:
        os.close(fd)


def _verify(source: Source, f: RemoteFile, target: Path, journal: Journal, durable: bool) -> None:
    try:
        size = target.stat().st_size
        if f.size is not None and size != f.size:
            raise ChecksumError(f"downloaded {size} bytes", where=f.key, expected=f"{f.size} bytes")
        checksum = source.checksum_of(f)
        fd = os.open(target, os.O_RDONLY)
        try:
            if checksum is not None:
                digest = hashlib.new(checksum.algorithm)
                while block := os.read(fd, HASH_BLOCK):
                    digest.update(block)
                if digest.hexdigest() != checksum.hex:
                    raise ChecksumError(
                        f"{checksum.algorithm} of the downloaded bytes is {digest.hexdigest()}",
                        where=f.key,
                        expected=f"{checksum.algorithm} {checksum.hex}",
                        hint="the bytes were corrupted on the way or the stored object is damaged; "
                             "the file was discarded, so running again downloads it afresh",
                    )
            if durable:
                os.fsync(fd)  # a cached model must survive a node restart intact
        finally:
            os.close(fd)
    except DownloadError:
        journal.drop(f.path)
        target.unlink(missing_ok=True)
        raise
