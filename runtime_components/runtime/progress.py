"""Progress on stderr: one line every few seconds while bytes flow, and a summary at the end."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]

MB = 1e6


class Progress:
    """Counts this run's bytes (thread-safe) and prints ``done/total MB (pct) MB/s`` lines."""

    def __init__(self, total: int, reused: int, *, interval_s: float = 3.0, out: TextIO | None = None) -> None:
        self.total = total
        self.reused = reused
        self.fetched = 0
        self.interval_s = interval_s
        self.out = out or sys.stderr
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.interval_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def add(self, n: int) -> None:
        with self._lock:
            self.fetched += n

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def line(self) -> str:
        done = self.fetched + self.reused
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        rate = self.fetched / MB / max(self.elapsed_s(), 1e-9)
        return f"aibrix-runtime: {done / MB:.1f}/{self.total / MB:.1f} MB{pct} {rate:.1f} MB/s"

    def _run(self) -> None:
        last = 0
        while not self._stop.wait(self.interval_s):
            if self.fetched != last:
                last = self.fetched
                print(self.line(), file=self.out, flush=True)
