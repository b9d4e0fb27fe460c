"""The component stages of ./Containerfile, as ``buildah config`` arguments.

    python3 scripts/containerfile_stages.py TARGET     # one argument per line

A component stage is ``FROM runtime AS <target>`` followed by LABEL and ENTRYPOINT lines
only. ``scripts/build-images`` builds ``runtime`` once and derives each component image
from it with these arguments (one commit each), instead of one ``buildah bud`` per target:
with the vfs storage driver every bud step copies the whole root filesystem, which made the
six config-only targets take minutes each. Docker buildx (the publishing workflow) builds the
same stages as written, so both paths produce the same image configs.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

CONTAINERFILE = Path(__file__).resolve().parents[1] / "Containerfile"


def component_stages(text: str) -> dict[str, list[str]]:
    """{target: buildah config arguments} for every ``FROM runtime AS target`` stage."""
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        start = re.fullmatch(r"FROM\s+(\S+)\s+AS\s+(\S+)", line)
        if start:
            current = stages.setdefault(start.group(2), []) if start.group(1) == "runtime" else None
            continue
        if current is None:
            continue
        instruction, _, rest = line.partition(" ")
        if instruction == "LABEL":
            for pair in shlex.split(rest):
                current += ["--label", pair]
        elif instruction == "ENTRYPOINT":
            current += ["--entrypoint", json.dumps(json.loads(rest))]
        else:
            raise SystemExit(f"error: Containerfile: stage of a runtime component has {instruction}; "
                             "only LABEL and ENTRYPOINT can be derived without a build (move it into `runtime`)")
    return stages


def main(argv: list[str]) -> int:
    stages = component_stages(CONTAINERFILE.read_text())
    if len(argv) != 1 or argv[0] not in stages:
        print(f"error: expected one of {sorted(stages)}", file=sys.stderr)
        return 2
    print("\n".join(stages[argv[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
