"""Rate limits: the sliding-window-counter arithmetic, its in-memory and Redis stores,
and the limiter that applies a tier's RPM and TPM to a user."""

from .limiter import RateLimiter
from .stores import MemoryWindowStore, RedisWindowStore, WindowStore
from .window import WindowCounts, estimate, retry_after_s

__all__ = [
    "MemoryWindowStore",
    "RateLimiter",
    "RedisWindowStore",
    "WindowCounts",
    "WindowStore",
    "estimate",
    "retry_after_s",
]
