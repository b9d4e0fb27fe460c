"""Pod launchers for the local API server: each pod becomes a real engine process.

`SubprocessLauncher` runs a command per pod (by default the simulated engine's console script,
`aibrix-engine-sim --host 127.0.0.1 --port {port} ...`) on a free loopback port, waits until
its `/metrics` answers (bounded by `ready_timeout`), then waits `startup_delay` more seconds:
the model-loading time a GPU pod spends before it is Ready. `stop` sends SIGTERM and, after
`grace` seconds, SIGKILL. On Linux an engine also dies with the scaler (a parent-death signal),
so a scaler killed before it could stop its pods leaves no engine behind.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
import time

import aiohttp

from runtime_components.common.processes import die_with_parent

__all__ = ["LaunchError", "SubprocessLauncher", "free_port"]


class LaunchError(RuntimeError):
    """An engine process exited early or never served /metrics."""


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SubprocessLauncher:
    """Start one process per pod from `command` ({port} and {pod} are substituted)."""

    def __init__(
        self,
        command: list[str],
        *,
        startup_delay: float = 0.0,
        ready_timeout: float = 60.0,
        grace: float = 5.0,
    ) -> None:
        if not command:
            raise ValueError("the engine command must not be empty")
        self.command = command
        self.startup_delay = startup_delay
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.ports: dict[str, int] = {}
        self._stderr_tails: dict[str, collections.deque[str]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def start(self, pod_name: str) -> int:
        port = free_port()
        argv = [part.format(port=port, pod=pod_name) for part in self.command]
        process = await asyncio.create_subprocess_exec(  # the engine goes when the scaler does, however it ends
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        self.processes[pod_name] = process
        self.ports[pod_name] = port
        tail: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_tails[pod_name] = tail
        drain = asyncio.create_task(self._drain(process, tail))
        self._drains.add(drain)
        drain.add_done_callback(self._drains.discard)
        try:
            await self._wait_serving(process, port, tail)
        except LaunchError:
            await self.stop(pod_name)
            raise
        await asyncio.sleep(self.startup_delay)
        return port

    async def stop(self, pod_name: str) -> None:
        process = self.processes.pop(pod_name, None)
        self.ports.pop(pod_name, None)
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=self.grace)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self.processes)))
        await asyncio.gather(*list(self._drains), return_exceptions=True)

    @staticmethod
    async def _drain(process: asyncio.subprocess.Process, tail: collections.deque[str]) -> None:
        """Keep reading stderr (a full pipe would block the engine); remember the last lines."""
        assert process.stderr is not None
        async for line in process.stderr:
            tail.append(line.decode(errors="replace").rstrip())

    async def _wait_serving(
        self, process: asyncio.subprocess.Process, port: int, tail: collections.deque[str]
    ) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://127.0.0.1:{port}/metrics"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    await asyncio.sleep(0.1)  # let the drain task read the last lines
                    raise LaunchError(f"engine command {' '.join(self.command)!r} exited with "
                                      f"{process.returncode}: {' / '.join(tail)[-500:]}")
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        if response.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.1)
        raise LaunchError(f"engine on port {port} did not serve {url} within {self.ready_timeout:g} s")
