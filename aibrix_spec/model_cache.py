"""Cache keys of model sources: one name per source URI, safe as a DNS label and a file name.

Where it sits: the compiler names a model's cache directory (``<cache root>/<key>``) with
``cache_key`` and passes it to ``aibrix-runtime download --dest``; the downloader locks and
evicts by that directory's name. Both must agree, so the function lives here, light enough for
the compiler to import (standard library only).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["CACHE_KEY_HASH_CHARS", "CACHE_KEY_NAME_CHARS", "cache_key"]

CACHE_KEY_NAME_CHARS = 40
CACHE_KEY_HASH_CHARS = 12

_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def cache_key(uri: str) -> str:
    """``<readable name>-<first 12 hex of sha256(uri)>`` for a source URI, revision included.

    The readable part is the URI's last path component (query and fragment aside; an
    ``@revision`` or ``:tag`` stays in it), lower-cased, every run of other characters made one
    ``-``, trimmed to at most 40 characters without a dangling ``-``; ``model`` when nothing is
    left. The hash makes distinct URIs distinct keys; the result is at most 53
    characters of ``[a-z0-9-]``, starting and ending with an alphanumeric.

    >>> cache_key("hf://Qwen/Qwen2.5-7B-Instruct@main")
    'qwen2-5-7b-instruct-main-05935d97e000'
    """
    path = uri.split("://", 1)[-1].split("#", 1)[0].split("?", 1)[0].rstrip("/")
    last = path.rsplit("/", 1)[-1]
    name = _NOT_ALLOWED.sub("-", last.lower()).strip("-")[:CACHE_KEY_NAME_CHARS].rstrip("-") or "model"
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:CACHE_KEY_HASH_CHARS]
    return f"{name}-{digest}"
