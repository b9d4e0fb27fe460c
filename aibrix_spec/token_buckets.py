"""Log2 token buckets shared by the gateway (which counts requests into them) and the
optimizer (whose profiles and workload use the same grid).

A bucket is named by its inclusive upper bound, a power of two: 1..16 tokens fall in
bucket 16, 17..32 in bucket 32, and so on up to ``MAX_BUCKET``; larger counts fall in
the last bucket. Keeping the function here (a light module) lets both sides agree
without importing each other.
"""

from __future__ import annotations

__all__ = ["MIN_BUCKET", "MAX_BUCKET", "BUCKETS", "bucket_of"]

MIN_BUCKET = 16
MAX_BUCKET = 32768
BUCKETS: tuple[int, ...] = tuple(1 << k for k in range(4, 16))  # 16 .. 32768


def bucket_of(tokens: int) -> int:
    """Return the log2 bucket (inclusive upper bound) for a token count.

    >>> bucket_of(0), bucket_of(16), bucket_of(17), bucket_of(10**6)
    (16, 16, 32, 32768)
    """
    if tokens <= MIN_BUCKET:
        return MIN_BUCKET
    if tokens >= MAX_BUCKET:
        return MAX_BUCKET
    return 1 << (int(tokens) - 1).bit_length()
