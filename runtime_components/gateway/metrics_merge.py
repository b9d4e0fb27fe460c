"""One /metrics page for a pod of several gateway workers: the workers' pages merged.

Each worker keeps its own registry (``metrics.py``); the supervisor fetches every worker's
page and merges them by metric family and label set:

- counters and histograms (buckets, ``_count``, ``_sum``) are summed: each request is counted
  by exactly one worker, so the sum is the pod's total;
- ``_created`` samples (when a series started) take the earliest worker's value;
- gauges take the largest value: the only gauge, ``aibrix_gateway_endpoints``, is a fact every
  worker sees alike (each runs its own discovery), so summing would count it N times.

The output is deterministic: families and series in sorted order (buckets by bound).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["merge_pages"]

_Key = tuple[str, tuple[tuple[str, str], ...]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if value == value and abs(value) != float("inf") else ("+Inf" if value > 0 else "-Inf")


def _order(item: tuple[_Key, float]) -> tuple[str, tuple[tuple[str, float, str], ...]]:
    """Series order: by sample name, then labels, histogram buckets by their numeric bound."""
    (sample, labels), _ = item
    return sample, tuple((k, float(v) if k == "le" else 0.0, v if k != "le" else "") for k, v in labels)


def merge_pages(pages: list[str]) -> bytes:
    """Merge Prometheus text pages of the same metrics into one page (rules in the module doc)."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help)
    values: dict[str, dict[_Key, float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            families.setdefault(family.name, (family.type, family.documentation))
            series = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif sample.name.endswith("_created"):
                    series[key] = min(series[key], sample.value)
                elif family.type == "gauge":
                    series[key] = max(series[key], sample.value)
                else:
                    series[key] = series[key] + sample.value
    lines: list[str] = []
    for name in sorted(families):
        kind, doc = families[name]
        exposed = f"{name}_total" if kind == "counter" else name
        lines.append(f"# HELP {exposed} {doc}")
        lines.append(f"# TYPE {exposed} {kind}")
        for (sample, labels), value in sorted(values[name].items(), key=_order):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{sample}{{{label_text}}} {_number(value)}" if labels else f"{sample} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()
