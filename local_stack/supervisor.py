"""Start component processes, wait until each is ready, stop every one of them.

Where it sits: under :mod:`local_stack.runner`. Each component is a console script started as
its own process group (``start_new_session``), its stdout and stderr in one log file per
component, so stopping kills the whole group (Envoy's launcher and its binary, a shell, any
grandchild) and nothing outlives the run. On Linux each child also gets a parent-death
signal, so even a ``kill -9`` of the runner leaves no engine behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime_components.common.processes import die_with_parent

__all__ = ["ComponentFailed", "Process", "Supervisor", "http_ok"]


class ComponentFailed(Exception):
    """A component did not start: one line saying which, why, and where its log is."""


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True when ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    info: dict[str, str] = field(default_factory=dict)  #: what its ready line said (ports)

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])


class Supervisor:
    """Owns every child process of one run; :meth:`stop_all` leaves none behind."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[Process] = []
        self._lock = threading.Lock()  # engines behind the scaler start and stop from another thread
        self._closed = False

    def start(self, name: str, argv: list[str], *, ready: re.Pattern[str] | None = None,
              probe: Callable[[], bool] | None = None, timeout_s: float = 60.0) -> Process:
        """Start ``argv`` and wait until it is ready (see :meth:`wait_ready`)."""
        return self.wait_ready(self.spawn(name, argv), ready=ready, probe=probe, timeout_s=timeout_s)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        """Start ``argv`` as its own process group, output to ``<log_dir>/<name>.log``."""
        log = self.log_dir / f"{name}.log"
        with self._lock:  # never start after stop_all: a late scale-up must not leave an orphan
            if self._closed:
                raise ComponentFailed(f"{name}: not started, the run is stopping")
            handle = open(log, "wb")
            try:
                proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env={**os.environ, **(env or {})},
                                        preexec_fn=die_with_parent if sys.platform == "linux" else None)
            except OSError as exc:
                raise ComponentFailed(f"{name}: cannot start {argv[0]}: {exc.strerror or exc}") from None
            finally:
                handle.close()
            process = Process(name, proc, log)
            self.processes.append(process)
        return process

    def wait_ready(self, process: Process, *, ready: re.Pattern[str] | None = None,
                   probe: Callable[[], bool] | None = None, timeout_s: float = 60.0) -> Process:
        """Wait until the log matches ``ready`` (named groups become :attr:`Process.info`) and
        ``probe()`` is true; raises :class:`ComponentFailed` when it exits or times out."""
        deadline = time.monotonic() + timeout_s
        matched = ready is None
        while True:
            if not matched and ready is not None:
                found = ready.search(process.log.read_text(encoding="utf-8", errors="replace"))
                if found:
                    process.info = {k: v for k, v in found.groupdict().items() if v is not None}
                    matched = True
            if matched and (probe is None or probe()):
                return process
            if process.proc.poll() is not None:
                raise ComponentFailed(f"{process.name} exited with status {process.proc.returncode} while starting: "
                                      f"{process.log_tail()} (log: {process.log})")
            if time.monotonic() > deadline:
                raise ComponentFailed(f"{process.name} was not ready after {timeout_s:.0f} s: {process.log_tail()} "
                                      f"(log: {process.log})")
            time.sleep(0.05)

    def exited(self) -> list[Process]:
        """Components that stopped on their own."""
        with self._lock:
            return [p for p in self.processes if p.proc.poll() is not None]

    def alive(self) -> set[str]:
        with self._lock:
            return {p.name for p in self.processes if p.proc.poll() is None}

    def stop(self, name: str, grace_s: float = 5.0) -> None:
        """Stop one component (an engine the scaler scaled away); unknown names are ignored."""
        with self._lock:
            chosen = [p for p in self.processes if p.name == name]
            self.processes = [p for p in self.processes if p.name != name]
        self._stop(chosen, grace_s)

    def stop_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM every process group (newest first: the front door before what it calls),
        SIGKILL what is left after ``grace_s``, and reap them all."""
        with self._lock:
            chosen, self.processes, self._closed = self.processes, [], True
        self._stop(chosen, grace_s)

    @staticmethod
    def _stop(processes: list[Process], grace_s: float) -> None:
        for process in reversed(processes):
            _signal_group(process.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in reversed(processes):
            try:
                process.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in processes:
            # The group may hold children even when its leader exited (a launcher's binary).
            _signal_group(process.proc, signal.SIGKILL)
            try:
                process.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session: its pid is the group id
    except (ProcessLookupError, PermissionError):
        pass
