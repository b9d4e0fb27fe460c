"""The live status table of ``aibrix-local up``: per model, replicas up, requests, errors.

Where it sits: read from the gateway's own ``/metrics`` (``aibrix_gateway_endpoints``,
``aibrix_gateway_requests_total``), so it shows what the gateway sees, not what was started.
"""

from __future__ import annotations

from .metrics import Sample

__all__ = ["status_rows", "format_status"]


def status_rows(samples: list[Sample], models: list[str]) -> list[tuple[str, int, int, int]]:
    """(model, replicas up, requests, errors) per model; an error is any non-2xx answer."""
    rows = []
    for model in models:
        up = sum(v for n, ls, v in samples if n == "aibrix_gateway_endpoints" and ls.get("model") == model
                 and ls.get("state") == "up")
        requests = errors = 0.0
        for n, ls, v in samples:
            if n == "aibrix_gateway_requests_total" and ls.get("model") == model:
                requests += v
                if not ls.get("status", "").startswith("2"):
                    errors += v
        rows.append((model, int(up), int(requests), int(errors)))
    return rows


def format_status(rows: list[tuple[str, int, int, int]]) -> list[str]:
    header = ("model", "replicas", "requests", "errors")
    width = max([len(header[0])] + [len(r[0]) for r in rows])
    lines = [f"{header[0]:<{width}}  {header[1]:>8}  {header[2]:>8}  {header[3]:>6}"]
    lines += [f"{m:<{width}}  {up:>8}  {req:>8}  {err:>6}" for m, up, req, err in rows]
    return lines
