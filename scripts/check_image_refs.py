"""Fail when the images we build and the images the compiler references disagree.

    python3 scripts/check_image_refs.py

Checks, printing one line per problem and exiting 1 on any:

1. ``bash scripts/build-images --list`` prints exactly the compiler's default aibrix-stack
   images (``aibrix_spec.sections.DEFAULT_IMAGES`` entries under ghcr.io/aibrix-stack/) plus the
   ArgoCD plugin image that ``argocd/repo-server-patch.yaml`` runs;
2. every image in every compiled example is upstream (a default outside ghcr.io/aibrix-stack/),
   built here (in the list), or set by that example's own ``spec.images``.

The publishing workflow runs it before pushing anything; tests/images runs it too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
OURS = "ghcr.io/aibrix-stack/"


def built_images() -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIBRIX_IMAGE_REGISTRY"}  # the default registry
    done = subprocess.run(["bash", str(REPO / "scripts" / "build-images"), "--list"], cwd=REPO,
                          capture_output=True, text=True, check=True, env=env)
    return done.stdout.split()


def _images(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _images(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images(item)


def problems() -> list[str]:
    sys.path.insert(0, str(REPO))
    from aibrix_spec.sections import DEFAULT_IMAGES
    from compiler.pipeline import compile_stack

    found: list[str] = []
    built = built_images()
    patch = yaml.safe_load((REPO / "argocd" / "repo-server-patch.yaml").read_text())
    expected = sorted({ref for ref in DEFAULT_IMAGES.values() if ref.startswith(OURS)} | set(_images(patch)))
    if sorted(built) != expected:
        found.append(f"scripts/build-images --list prints {sorted(built)}, but the compiler's defaults and the "
                     f"ArgoCD repo-server patch reference {expected}; change both together")
    upstream = {ref for ref in DEFAULT_IMAGES.values() if not ref.startswith(OURS)}
    for example in sorted((REPO / "examples" / "stacks").glob("*.yaml")):
        text = example.read_text()
        own = set(_images_in_spec(yaml.safe_load(text)))
        for path, doc in compile_stack(text, source_name=example.name).items():
            for ref in _images(yaml.safe_load(doc)):
                if ref not in upstream and ref not in built and ref not in own:
                    found.append(f"{example.name}: {path} uses {ref}, which is neither upstream, built by "
                                 "scripts/build-images, nor set in the example's spec.images")
    return found


def _images_in_spec(stack: dict[str, Any]) -> Iterator[str]:
    for value in ((stack.get("spec") or {}).get("images") or {}).values():
        if isinstance(value, str):
            yield value


def main() -> int:
    found = problems()
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if not found:
        print(f"image references agree: {len(built_images())} images built, every compiled reference accounted for")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
