"""The only disk writes of aibrix-compile: ``-o DIR`` (atomic) and ``--check DIR`` (diff).

``write_tree`` writes every file into a fresh temporary directory next to DIR, then swaps
it in with renames, so DIR holds either the old tree or the complete new one, never a
mix, and a failure leaves DIR untouched. DIR is owned by the compiler: an existing DIR
must be empty or hold a previous output (a kustomization.yaml), otherwise we refuse
rather than delete someone's files.

``diff_tree`` compares the compiled files with DIR's ``*.yaml`` files and returns a
unified diff (empty when DIR is up to date), covering changed, missing and extra files.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError
from .serialize import KUSTOMIZATION

__all__ = ["diff_tree", "read_tree", "write_tree"]


def read_tree(directory: Path) -> dict[str, str]:
    """Every ``*.yaml`` file under ``directory`` by POSIX relative path."""
    return {
        p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(directory.rglob("*.yaml"))
        if p.is_file()
    }


def write_tree(directory: Path, files: dict[str, str]) -> None:
    """Replace ``directory`` with exactly ``files``, atomically."""
    directory = directory.absolute()
    if directory.exists():
        if not directory.is_dir():
            raise UsageError(f"-o {directory.name}: exists and is not a directory; expected a directory path")
        if any(directory.iterdir()) and not (directory / KUSTOMIZATION).is_file():
            raise UsageError(
                f"-o {directory.name}: the directory is not empty and holds no kustomization.yaml, so it is not "
                "an earlier aibrix-compile output; refusing to replace it (pick an empty or new directory)"
            )
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=parent))
    retired: Path | None = None
    try:
        for rel, text in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=parent))
            os.rename(directory, retired / "tree")
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None and (retired / "tree").exists() and not directory.exists():
            os.rename(retired / "tree", directory)  # put the old tree back
        raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


def diff_tree(directory: Path, files: dict[str, str]) -> str:
    """Unified diff from DIR's files to the compiled ones; "" when DIR is current."""
    current = read_tree(directory) if directory.is_dir() else {}
    chunks: list[str] = []
    for rel in sorted(set(current) | set(files)):
        old, new = current.get(rel), files.get(rel)
        if old == new:
            continue
        chunks.extend(
            difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                (new or "").splitlines(keepends=True),
                fromfile=f"a/{rel}" if old is not None else "/dev/null",
                tofile=f"b/{rel}" if new is not None else "/dev/null",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)
