"""A closed-loop load driver: `n` clients, each with one completion request in flight.

Used by `aibrix-scaler local` and the end-to-end test to ramp load on the engines behind the
local API server. With `n` clients the engines see a concurrency (running + waiting) of about
`n`, so a scaler targeting `t` per replica should settle at ceil(n / t) replicas. Each client
sends its next request to the engine where this driver has the fewest requests in flight;
failed requests (an engine that was just removed) are counted and retried elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

__all__ = ["ClosedLoopLoad"]


class ClosedLoopLoad:
    """Keep `concurrency` requests in flight against the URLs `endpoints()` returns."""

    def __init__(
        self,
        endpoints: Callable[[], list[str]],
        session: aiohttp.ClientSession,
        *,
        model: str,
        prompt: str = "Tell me a story about an autoscaler that learned patience. " * 8,
        max_tokens: int = 200,
        request_timeout_s: float = 120.0,
    ) -> None:
        self._endpoints = endpoints
        self._session = session
        self._body = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._workers: list[asyncio.Task[None]] = []
        self._inflight: dict[str, int] = {}
        self.completed = 0
        self.failed = 0

    @property
    def concurrency(self) -> int:
        return len(self._workers)

    def set_concurrency(self, n: int) -> None:
        """Start or cancel clients until `n` run."""
        if n < 0:
            raise ValueError(f"concurrency must not be negative, got {n}")
        while len(self._workers) < n:
            self._workers.append(asyncio.create_task(self._client()))
        while len(self._workers) > n:
            self._workers.pop().cancel()

    async def stop(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _client(self) -> None:
        while True:
            urls = self._endpoints()
            if not urls:
                await asyncio.sleep(0.2)
                continue
            url = min(urls, key=lambda u: self._inflight.get(u, 0))
            self._inflight[url] = self._inflight.get(url, 0) + 1
            try:
                async with self._session.post(f"{url}/v1/completions", json=self._body,
                                              timeout=self._timeout) as response:
                    await response.read()
                    ok = response.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            finally:
                self._inflight[url] -= 1
            if ok:
                self.completed += 1
            else:
                self.failed += 1
                await asyncio.sleep(0.2)
