"""Read the Prometheus pages of the running stack: the gateway's and each engine's.

Where it sits: the status table and ``smoke`` read the same numbers through here. Engine
counters are named through the shared metric table (``aibrix_spec.engine_metrics``), so a
stack with SGLang-dialect engines is read in SGLang's names.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable

from aibrix_spec.engine_metrics import dialect

__all__ = ["Sample", "engine_generation_tokens", "fetch", "parse", "total"]

Sample = tuple[str, dict[str, str], float]
_LINE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[A-Za-z_][A-Za-z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[Sample]:
    """Samples of a text exposition page (comments and malformed lines skipped)."""
    samples = []
    for line in text.splitlines():
        found = _LINE.match(line)
        if found is None or line.startswith("#"):
            continue
        try:
            value = float(found["value"])
        except ValueError:
            continue
        labels = {m["key"]: m["value"] for m in _LABEL.finditer(found["labels"] or "")}
        samples.append((found["name"], labels, value))
    return samples


def fetch(url: str, timeout_s: float = 2.0) -> list[Sample]:
    """The page at ``url``, parsed; empty when it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse(resp.read().decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return []


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """Sum of ``name`` over the series whose labels include ``labels``."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items()))


def engine_generation_tokens(address: str, engine: str) -> float:
    """Output tokens one engine has generated, read in its own metric dialect."""
    samples = fetch(f"http://{address}/metrics")
    return sum(total(samples, name) for name in dialect(engine).names_of("generation_tokens"))
