"""Keys of the model cache: where a downloaded source lives under the cache root.

Shared by the compiler (which points the engine at ``<root>/<key>``) and the downloader
(which publishes there), so both derive the same directory from the same URI.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["cache_key"]

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def cache_key(uri: str) -> str:
    """``<last path component, sanitised, at most 40 chars>-<first 12 hex of sha256(uri)>``.

    >>> cache_key("s3://models/llama-3-8b")
    'llama-3-8b-62e3fee9e06f'
    """
    tail = uri.rstrip("/").rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0].lower()
    name = _UNSAFE.sub("-", tail).strip("-")[:40].strip("-") or "model"
    return f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"
