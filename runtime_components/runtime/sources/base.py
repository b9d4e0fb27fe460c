"""The interface every source implements, and the facts it reports about each file.

A source lists the files of a model (``list_files``) and streams byte ranges of one
(``read``). It raises the ``errors`` hierarchy: ``NetworkError`` for what a retry may cure
(the transfer engine retries those), anything else is final.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

__all__ = ["Checksum", "RemoteFile", "Source", "SourceOptions", "UnpackKind", "safe_relative_path"]

UnpackKind = Literal["tar", "tar.gz", "zip"]


@dataclass(frozen=True)
class Checksum:
    """A digest the downloaded bytes must have."""

    algorithm: Literal["md5", "sha256"]
    hex: str


@dataclass(frozen=True)
class RemoteFile:
    """One object to fetch.

    ``path`` is where its bytes land, relative to the working directory: ``model/...`` for a
    file of the model, ``archives/...`` for an archive unpacked into ``model/`` once verified.
    ``version`` changes whenever the object does (ETag, digest, Last-Modified): a partial file
    is resumed only for the same version. ``size`` is None only for a server that sends no
    length (then ``ranged`` is False and the file is read in one stream).
    """

    key: str
    path: str
    size: int | None
    version: str
    checksum: Checksum | None = None
    unpack: UnpackKind | None = None
    ranged: bool = True


@dataclass(frozen=True)
class SourceOptions:
    """What the command line says about reaching the source."""

    endpoint: str | None = None
    token_file: Path | None = None
    parallel: int = 8
    timeout_s: float = 60.0


class Source(Protocol):
    uri: str

    def list_files(self) -> list[RemoteFile]:
        """Every file of the model, sorted by path; raises NotFoundError when there are none."""
        ...

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of ``file`` (``end`` None: to the end, unranged sources)."""
        ...

    def checksum_of(self, file: RemoteFile) -> Checksum | None:
        """The digest to verify once ``file`` is complete (what reading it taught may drop one)."""
        ...

    def close(self) -> None: ...


def safe_relative_path(name: str) -> str | None:
    """``name`` as a relative POSIX path that stays inside its folder, or None if it would not."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or name.startswith("/"):
        return None
    return "/".join(parts)
