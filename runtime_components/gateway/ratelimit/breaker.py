"""A circuit breaker in front of the shared counter store (Redis), so a hung store costs
the first few requests one short timeout each and then nothing.

    closed     every call goes to the store, bounded by ``timeout_s``; ``failures`` consecutive
               failures (errors or timeouts) open the circuit
    open       calls fail at once with StoreUnavailable (the limiter's caller serves the request
               unlimited: fail open) for ``cooldown_s``
    half-open  after the cooldown one call probes the store while the others keep failing at
               once; its success closes the circuit, its failure opens it for another cooldown

Why a breaker and not only a short timeout: a hung (not dead) Redis accepts connections and
never answers, so every request would wait out the timeout; with the breaker only the probe
does, once per cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .stores import Operation, WindowStore
from .window import WindowCounts

__all__ = ["BreakerStore", "StoreUnavailable"]

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The counter store is failing or its circuit is open; the request is not limited."""


class BreakerStore:
    """Wraps a :class:`WindowStore` with a per-call deadline and a circuit breaker."""

    def __init__(self, store: WindowStore, *, timeout_s: float, failures: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._timeout_s = timeout_s
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.state_changes: list[str] = []  # "open" / "closed", for the log and tests

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing or self._clock() - self._opened_at >= self._cooldown_s else "open"

    async def apply_all(self, ops: list[Operation]) -> list[tuple[bool, WindowCounts]]:
        probe = False
        if self._opened_at is not None:
            if self._probing or self._clock() - self._opened_at < self._cooldown_s:
                raise StoreUnavailable("rate-limit store circuit is open")
            self._probing = probe = True
        try:
            result = await asyncio.wait_for(self._store.apply_all(ops), self._timeout_s)
        except Exception as exc:
            self._failed(probe)
            if isinstance(exc, asyncio.TimeoutError):
                raise StoreUnavailable(f"rate-limit store did not answer within {self._timeout_s * 1000:.0f} ms") from None
            raise StoreUnavailable(f"rate-limit store failed: {exc.__class__.__name__}: {exc}") from None
        finally:
            if probe:
                self._probing = False
        if self._opened_at is not None or self._failures:
            if self._opened_at is not None:
                self.state_changes.append("closed")
                log.info("rate-limit store answers again: limits apply again")
            self._opened_at = None
            self._failures = 0
        return result

    def _failed(self, probe: bool) -> None:
        self._failures += 1
        if probe or (self._opened_at is None and self._failures >= self._threshold):
            if self._opened_at is None:
                self.state_changes.append("open")
                log.warning("rate-limit store failed %d times in a row: limits skipped (fail open), "
                            "probing again every %g s", self._failures, self._cooldown_s)
            self._opened_at = self._clock()

    async def close(self) -> None:
        await self._store.close()
