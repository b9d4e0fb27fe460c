"""The resume journal: which byte ranges of which object version are already on disk.

One JSON object per line in ``<workdir>/journal.jsonl``: a header naming the source URI, then
``{"path", "version", "start", "end"}`` after a range's bytes are written, and ``{"drop": path}``
when a file failed verification. A range is recorded only once its bytes are in the partial
file, so a process killed at any point leaves a journal that under-states, never over-states,
what is there; a torn last line is ignored. A journal for another URI is discarded.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO

__all__ = ["Journal", "missing_ranges"]

Range = tuple[int, int]


class Journal:
    def __init__(self, path: Path, uri: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str], list[Range]] = {}
        if path.exists():
            self._load(uri)
        if not path.exists():
            path.write_text(json.dumps({"uri": uri}) + "\n")
        self._out: IO[str] = open(path, "a", encoding="utf-8")

    def _load(self, uri: str) -> None:
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except ValueError:
            header = {}
        if header.get("uri") != uri:
            self.path.unlink()
            return
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # torn write of a killed run
            if "drop" in rec:
                for key in [k for k in self._done if k[0] == rec["drop"]]:
                    del self._done[key]
            elif {"path", "version", "start", "end"} <= rec.keys():
                self._done.setdefault((rec["path"], rec["version"]), []).append((int(rec["start"]), int(rec["end"])))

    def done(self, path: str, version: str) -> list[Range]:
        """Ranges of ``path`` at ``version`` recorded by this or an earlier run."""
        return list(self._done.get((path, version), []))

    def versions(self, path: str) -> set[str]:
        return {v for p, v in self._done if p == path}

    def record(self, path: str, version: str, start: int, end: int) -> None:
        with self._lock:
            self._done.setdefault((path, version), []).append((start, end))
            self._out.write(json.dumps({"path": path, "version": version, "start": start, "end": end}) + "\n")
            self._out.flush()

    def drop(self, path: str) -> None:
        with self._lock:
            for key in [k for k in self._done if k[0] == path]:
                del self._done[key]
            self._out.write(json.dumps({"drop": path}) + "\n")
            self._out.flush()

    def close(self) -> None:
        self._out.close()


def missing_ranges(size: int, done: list[Range], chunk: int) -> list[Range]:
    """``[0, size)`` minus the ``done`` ranges, cut into pieces of at most ``chunk`` bytes."""
    out: list[Range] = []
    cursor = 0
    for start, end in sorted(done) + [(size, size)]:
        if start > cursor:
            gap_end = min(start, size)
            out.extend((s, min(s + chunk, gap_end)) for s in range(cursor, gap_end, chunk))
        cursor = max(cursor, end)
        if cursor >= size:
            break
    return out
