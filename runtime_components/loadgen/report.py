"""Summaries of a load run: latency percentiles, throughput, errors; as a table and JSON.

Where it sits: ``aibrix-load`` prints ``format_table(summarize(records, wall_s))`` and the
same summary as one JSON object. Percentiles interpolate linearly between order
statistics; latencies are reported in milliseconds, throughput per wall second of the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from runtime_components.common.stats import percentile

from .client import LoadRecord

__all__ = ["percentile", "latency_stats", "summarize", "format_table"]


def latency_stats(values_s: Iterable[float]) -> dict[str, float | None]:
    """mean/p50/p90/p99 in milliseconds (None when there is no value)."""
    ordered = sorted(values_s)
    if not ordered:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    ms = [v * 1000.0 for v in ordered]
    return {
        "mean": round(sum(ms) / len(ms), 3),
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
    }


def summarize(records: Sequence[LoadRecord], wall_s: float) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    errors = Counter((r.error or "").split(":")[0] for r in records if not r.ok)
    duration = max(wall_s, 1e-9)
    return {
        "requests": len(records),
        "completed": len(ok),
        "errors": len(records) - len(ok),
        "error_kinds": dict(sorted(errors.items())),
        "wall_s": round(wall_s, 3),
        "req_per_s": round(len(ok) / duration, 3),
        "output_tok_per_s": round(sum(r.output_tokens for r in ok) / duration, 3),
        "ttft_ms": latency_stats(r.ttft_s for r in ok if r.ttft_s is not None),
        "tpot_ms": latency_stats(r.tpot_s for r in ok if r.tpot_s is not None),
        "itl_ms": latency_stats(x for r in ok for x in r.itl_s),
        "e2e_ms": latency_stats(r.e2e_s for r in ok if r.e2e_s is not None),
        "client_queue_ms": latency_stats(r.queued_s for r in ok),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(summary: dict[str, Any]) -> str:
    lines = [
        f"requests {summary['requests']}  completed {summary['completed']}  errors {summary['errors']}"
        + (f" {summary['error_kinds']}" if summary["error_kinds"] else ""),
        f"wall {summary['wall_s']:.1f} s  throughput {summary['req_per_s']:.2f} req/s  "
        f"{summary['output_tok_per_s']:.1f} output tok/s",
        f"{'metric (ms)':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}",
    ]
    for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "e2e")):
        row = summary[key]
        lines.append(f"{label:<14}" + "".join(f"{_fmt(row[q]):>10}" for q in ("mean", "p50", "p90", "p99")))
    return "\n".join(lines)
