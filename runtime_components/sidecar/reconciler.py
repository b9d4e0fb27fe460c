"""One reconcile pass: make the engine hold exactly this pod's share of the adapters.

Order matters because the engine has a limit on loaded adapters: unload what is no longer
wanted first, then load what is missing (in name order) while slots remain.

Failures are remembered across passes, per adapter and declared path:

- a transient failure (engine down, 5xx) is retried on later passes with exponential
  backoff (``base_delay_s * 2**(attempt-1)``, capped at ``max_delay_s``);
- a rejection (the engine answered 4xx: bad path, bad weights) is retried the same way
  but gives up after ``max_attempts`` and is reported as failed, never retried forever;
  changing the adapter's declared path clears its record.

The pass is pure control flow over an :class:`~.engine_client.EngineClient` and an
injected clock, so tests drive it with a fake engine and a fake clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .engine_client import AdapterRejected, EngineClient, EngineUnavailable

__all__ = ["RetryPolicy", "ReconcileReport", "Reconciler"]


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_attempts: int = 5

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempt - 1))))


@dataclass
class _Failure:
    path: str
    attempts: int
    next_try_at: float
    reason: str
    permanent: bool


@dataclass(frozen=True)
class ReconcileReport:
    """What one pass did and what is still outstanding."""

    loaded: tuple[str, ...] = ()
    unloaded: tuple[str, ...] = ()
    holding: tuple[str, ...] = ()
    waiting_retry: Mapping[str, str] = field(default_factory=dict)  #: adapter -> last error
    failed: Mapping[str, str] = field(default_factory=dict)  #: adapter -> why it was given up
    no_slot: tuple[str, ...] = ()  #: wanted, but the engine's adapter limit is reached
    engine_error: str | None = None  #: the engine could not be asked what it holds

    @property
    def converged(self) -> bool:
        return not (self.waiting_retry or self.failed or self.no_slot or self.engine_error)


class Reconciler:
    """Keeps one engine's adapters equal to a desired set across repeated passes."""

    def __init__(
        self,
        engine: EngineClient,
        *,
        max_loras: int,
        retry: RetryPolicy = RetryPolicy(),
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._max_loras = max_loras
        self._retry = retry
        self._clock = clock
        self._failures: dict[str, _Failure] = {}

    async def reconcile(self, desired: Mapping[str, str]) -> ReconcileReport:
        """``desired`` maps adapter name -> path the engine should load it from."""
        now = self._clock()
        for name in [n for n, f in self._failures.items() if desired.get(n) != f.path]:
            del self._failures[name]  # undeclared or re-pointed: start afresh
        try:
            held = await self._engine.loaded_adapters()
        except EngineUnavailable as exc:
            return ReconcileReport(engine_error=str(exc))

        unloaded: list[str] = []
        for name in sorted(set(held) - set(desired)):
            try:
                # a rejection means it is already gone: the engine no longer knows it
                with contextlib.suppress(AdapterRejected):
                    await self._engine.unload(name)
            except EngineUnavailable as exc:
                return ReconcileReport(unloaded=tuple(unloaded), engine_error=str(exc))
            unloaded.append(name)
            del held[name]

        loaded: list[str] = []
        no_slot: list[str] = []
        for name in sorted(set(desired) - set(held)):
            failure = self._failures.get(name)
            if failure is not None and (failure.permanent or now < failure.next_try_at):
                continue
            if len(held) >= self._max_loras:
                no_slot.append(name)
                continue
            try:
                await self._engine.load(name, desired[name])
            except (AdapterRejected, EngineUnavailable) as exc:
                self._record_failure(name, desired[name], exc, now)
                continue
            self._failures.pop(name, None)
            held[name] = desired[name]
            loaded.append(name)

        return ReconcileReport(
            loaded=tuple(loaded),
            unloaded=tuple(unloaded),
            holding=tuple(sorted(held)),
            waiting_retry={n: f.reason for n, f in sorted(self._failures.items()) if not f.permanent},
            failed={n: f.reason for n, f in sorted(self._failures.items()) if f.permanent},
            no_slot=tuple(no_slot),
        )

    def _record_failure(self, name: str, path: str, exc: Exception, now: float) -> None:
        previous = self._failures.get(name)
        attempts = (previous.attempts if previous else 0) + 1
        rejected = isinstance(exc, AdapterRejected)
        permanent = rejected and attempts >= self._retry.max_attempts
        reason = str(exc)
        if permanent:
            reason = f"gave up after {attempts} attempts: {reason}"
        self._failures[name] = _Failure(
            path=path,
            attempts=attempts,
            next_try_at=now + self._retry.delay(attempts),
            reason=reason,
            permanent=permanent,
        )
