"""Where model bytes come from: one module per protocol, each a ``Source`` (see ``base``).

``open_source(uri, options)`` picks the module by scheme: ``s3://`` and ``gs://`` (``s3``),
``https://`` and ``http://`` (``http``), ``oci://`` (``oci``). ``hf://`` and ``pvc://`` are
the engine's, not the downloader's.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import Checksum, RemoteFile, Source, SourceOptions

__all__ = ["Checksum", "RemoteFile", "Source", "SourceOptions", "open_source"]

SCHEMES = ("s3", "gs", "https", "http", "oci")


def open_source(uri: str, options: SourceOptions) -> Source:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in ("s3", "gs"):
        from .s3 import S3Source

        return S3Source(uri, options)
    if scheme in ("https", "http"):
        from .http import HttpSource

        return HttpSource(uri, options)
    if scheme == "oci":
        from .oci import OciSource

        return OciSource(uri, options)
    if scheme in ("hf", "pvc"):
        raise UsageError(
            f"{scheme}:// sources are loaded by the engine, not downloaded",
            where=uri,
            hint="the compiler passes hf:// and pvc:// models to the engine directly",
        )
    raise UsageError(
        f"unknown source scheme {scheme + '://' if scheme else '(none)'}",
        where=uri,
        expected="one of " + ", ".join(s + "://" for s in SCHEMES),
    )
