"""Applies a user's tier (RPM and TPM) through a window store.

Before a request: TPM is only checked (``check``: at least one token of budget left), because
tokens are known after the response, then RPM is checked and counted atomically (``admit``,
cost 1), both in one store call (one Redis round trip). After the response: the usage's prompt + completion tokens are added to
TPM (``add``). A user whose tier is None is not limited.
"""

from __future__ import annotations

from aibrix_spec.components.gateway import TierSpec

from ..errors import rate_limited
from ..users import User
from .stores import WindowStore
from .window import retry_after_s

__all__ = ["RateLimiter"]


class RateLimiter:
    """RPM/TPM limits of every tier, counted in one :class:`WindowStore`."""

    def __init__(self, tiers: dict[str, TierSpec], store: WindowStore, window_s: float) -> None:
        self._tiers = tiers
        self._store = store
        self._window_s = window_s

    async def admit(self, user: User) -> None:
        """Count one request for ``user`` or raise a 429 GatewayError with Retry-After."""
        tier = self._tiers.get(user.tier) if user.tier else None
        if tier is None:
            return
        results = await self._store.apply_all([(f"{user.name}:tpm", "check", 1, tier.tpm),
                                               (f"{user.name}:rpm", "admit", 1, tier.rpm)])
        ok, counts = results[0]
        if not ok:
            wait = retry_after_s(counts, 1, tier.tpm, self._window_s)
            raise rate_limited(f'User "{user.name}" used the {tier.tpm} tokens per minute of tier "{user.tier}"', wait, "tpm")
        ok, counts = results[1]
        if not ok:
            wait = retry_after_s(counts, 1, tier.rpm, self._window_s)
            raise rate_limited(f'User "{user.name}" sent the {tier.rpm} requests per minute of tier "{user.tier}"', wait, "rpm")

    def limits(self, user: User) -> bool:
        """Whether ``user``'s requests are counted (``admit`` then waits for the store)."""
        return bool(user.tier) and user.tier in self._tiers

    def counts_tokens(self, user: User) -> bool:
        """Whether ``user``'s tier has a TPM budget, so the gateway must read its responses' usage
        (every tier has one)."""
        return self.limits(user)

    async def record_tokens(self, user: User, tokens: int) -> None:
        """Add a response's tokens to the user's TPM window."""
        tier = self._tiers.get(user.tier) if user.tier else None
        if tier is None or tokens <= 0:
            return
        await self._store.apply_all([(f"{user.name}:tpm", "add", tokens, tier.tpm)])

    async def close(self) -> None:
        await self._store.close()
