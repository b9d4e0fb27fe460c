"""Serve an aiohttp application from a thread with its own event loop, for synchronous callers
(the official client's blocking calls, a test that drives a component from its main thread)."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from aiohttp import web

__all__ = ["ThreadedServer"]


class ThreadedServer:
    """`with ThreadedServer(app) as server:` serves `app` on 127.0.0.1 (a free port) at `server.url`."""

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-kube-api", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> ThreadedServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
