"""``https://host/path`` (and ``http://`` for in-cluster servers): one file, or an archive unpacked.

A URL ending in ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` is an archive: it is downloaded,
verified and unpacked into the model folder (one wrapping top folder is dropped). Anything else
is a single file saved under its URL's last path component. ``--token-file`` adds
``Authorization: Bearer <token>`` (never sent on to another host by a redirect). A fragment
``#sha256=<hex>`` is a digest the file must have (fragments never reach the server).

The first request asks for byte 0 only: a ``206`` with ``Content-Range`` gives the size and
turns on parallel ranged reads (each carries ``If-Range`` with the ETag, so a file replaced
mid-download comes back whole and is refused); a ``200`` means the server ignores ranges, and
the file is read in one stream (restarted from zero on a retry).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

from ..errors import (
    AccessDeniedError,
    ChecksumError,
    DownloadError,
    NetworkError,
    NotFoundError,
    UsageError,
)
from .base import Checksum, RemoteFile, SourceOptions, UnpackKind, safe_relative_path

__all__ = ["HttpSource", "archive_kind", "http_error", "make_pool"]

READ_BYTES = 1 << 20
_ARCHIVES: tuple[tuple[str, UnpackKind], ...] = (
    (".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar", "tar"), (".zip", "zip"),
)


def archive_kind(name: str) -> UnpackKind | None:
    lower = name.lower()
    return next((kind for suffix, kind in _ARCHIVES if lower.endswith(suffix)), None)


def make_pool(options: SourceOptions) -> Any:
    try:
        import urllib3
    except ImportError as exc:
        raise UsageError(f"urllib3 is not installed ({exc})", hint="pip install 'aibrix-stack[runtime]'") from None
    return urllib3.PoolManager(
        maxsize=options.parallel + 2,
        timeout=urllib3.Timeout(connect=options.timeout_s, read=options.timeout_s),
        retries=urllib3.Retry(total=4, connect=4, read=2, redirect=8, backoff_factor=0.5,
                              status_forcelist=(429, 502, 503, 504), raise_on_status=False,
                              raise_on_redirect=False),
    )


def http_error(status: int, where: str, what: str = "") -> DownloadError:
    """The error for an HTTP status the downloader cannot use."""
    detail = f"HTTP {status}" + (f": {what}" if what else "")
    if status in (404, 410):
        return NotFoundError(f"not found ({detail})", where=where, hint="check the URL")
    if status in (401, 403):
        return AccessDeniedError(f"access denied ({detail})", where=where,
                                 hint="check the token (--token-file) or the registry credentials")
    if status >= 500 or status == 429:
        return NetworkError(f"the server kept failing ({detail})", where=where)
    return DownloadError(f"unexpected answer ({detail})", where=where)


class HttpSource:
    strip_top = True

    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.uri = uri
        self.url, fragment = urldefrag(uri)
        self.sha256: str | None = None
        if fragment:
            algo, _, hexdigest = fragment.partition("=")
            if algo != "sha256" or len(hexdigest) != 64:
                raise UsageError(f"unknown URL fragment #{fragment}", where=uri, expected="#sha256=<64 hex digits>")
            self.sha256 = hexdigest.lower()
        self.headers = {"Accept-Encoding": "identity", "User-Agent": "aibrix-runtime"}
        if options.token_file is not None:
            token = options.token_file.read_text().strip()
            if not token:
                raise UsageError("the token file is empty", where=str(options.token_file))
            self.headers["Authorization"] = f"Bearer {token}"
        name = safe_relative_path(posixpath.basename(unquote(urlsplit(self.url).path))) or "download"
        self.kind = archive_kind(name)
        self.path = ("archives/" if self.kind else "model/") + name
        self.pool = make_pool(options)

    def _get(self, headers: dict[str, str]) -> Any:
        import urllib3

        try:
            return self.pool.request("GET", self.url, headers={**self.headers, **headers}, preload_content=False,
                                     decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise NetworkError(f"{type(exc).__name__}: {exc}", where=self.url) from None

    def list_files(self) -> list[RemoteFile]:
        resp = self._get({"Range": "bytes=0-0"})
        try:
            if resp.status not in (200, 206):
                raise http_error(resp.status, self.url)
            etag = resp.headers.get("ETag") or ""
            # If-Range takes only a strong ETag or a date; a weak one would make every range come back whole
            version = (etag if etag and not etag.startswith("W/") else "") or resp.headers.get("Last-Modified") or ""
            if resp.status == 206 and "/" in resp.headers.get("Content-Range", ""):
                total = resp.headers["Content-Range"].rsplit("/", 1)[1]
                size: int | None = int(total) if total.isdigit() else None
                ranged = size is not None
            else:
                length = resp.headers.get("Content-Length")
                size = int(length) if length and length.isdigit() else None
                ranged = False
        finally:
            resp.release_conn()
        return [RemoteFile(key=self.url, path=self.path, size=size, version=version or f"size:{size}",
                           checksum=Checksum("sha256", self.sha256) if self.sha256 else None,
                           unpack=self.kind, ranged=ranged)]

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        headers: dict[str, str] = {}
        if file.ranged and end is not None:
            if end <= start:
                return
            headers["Range"] = f"bytes={start}-{end - 1}"
            if not file.version.startswith("size:"):
                headers["If-Range"] = file.version
        resp = self._get(headers)
        try:
            if "Range" in headers and resp.status == 200:
                raise ChecksumError("the file changed while it was being downloaded (the server sent it whole)",
                                    where=self.url, hint="run the download again")
            if resp.status not in (200, 206):
                raise http_error(resp.status, self.url)
            yield from stream(resp, self.url)
        finally:
            resp.release_conn()

    def checksum_of(self, file: RemoteFile) -> Checksum | None:
        return file.checksum

    def close(self) -> None:
        self.pool.clear()


def stream(resp: Any, where: str) -> Iterator[bytes]:
    """The body of ``resp`` in pieces; a broken connection is a retryable NetworkError."""
    import urllib3

    try:
        while piece := resp.read(READ_BYTES):
            yield piece
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise NetworkError(f"reading the body failed: {exc}", where=where) from None
