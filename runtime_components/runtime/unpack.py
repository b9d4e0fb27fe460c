"""Unpack a verified archive into the model folder, refusing anything that would escape it.

Tar members go through Python's ``data`` filter (no absolute paths, no ``..``, no links out of
the folder, no devices); zip members are checked the same way by hand. With ``strip_top`` an
archive whose members all sit under one top folder (``tar czf m.tgz my-model/``) is unpacked
without that folder, so the model's files land at the top of the destination.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

from .errors import ChecksumError, UsageError
from .sources.base import UnpackKind, safe_relative_path

__all__ = ["unpack"]


def unpack(archive: Path, kind: UnpackKind, into: Path, *, strip_top: bool, where: str) -> None:
    into.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            _unzip(archive, into, strip_top, where)
        else:
            _untar(archive, into, strip_top, where)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, tarfile.FilterError):
            raise UsageError(f"the archive holds an unsafe member: {exc}", where=where) from None
        raise ChecksumError(f"the archive cannot be unpacked: {exc}", where=where,
                            hint="the file is not a valid archive of the type its name says") from None


def _top(names: list[str]) -> str | None:
    tops = {n.split("/", 1)[0] for n in names if n.strip("/")}
    nested = all("/" in n.strip("/") or n.strip("/") in tops for n in names)
    if len(tops) == 1 and nested and any("/" in n.strip("/") for n in names):
        return tops.pop()
    return None


def _untar(archive: Path, into: Path, strip_top: bool, where: str) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        top = _top([m.name.lstrip("./") for m in members]) if strip_top else None
        for m in members:
            name = m.name.lstrip("./") if m.name.startswith("./") else m.name
            if top is not None:
                if name.strip("/") == top:
                    continue
                name = name[len(top) + 1 :]
            if not name:
                continue
            m.name = name
            tar.extract(m, into, filter="data")


def _unzip(archive: Path, into: Path, strip_top: bool, where: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        top = _top([i.filename for i in infos]) if strip_top else None
        for info in infos:
            name = info.filename
            if top is not None:
                if name.strip("/") == top:
                    continue
                name = name[len(top) + 1 :]
            rel = safe_relative_path(name)
            if rel is None:
                raise UsageError(f"the archive member {info.filename!r} would land outside the model folder", where=where)
            target = into / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(target, 0o644)
