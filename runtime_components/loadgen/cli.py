"""``aibrix-load``: replay a JSONL trace against OpenAI endpoints and report latencies.

Example::

    python -m benchmarks.workloads chat --n 200 --rate 5 --out chat.jsonl
    aibrix-load --trace chat.jsonl --endpoints-file endpoints.json --duration-s 60 --json-out run.json

Prints a table, then the summary as one JSON line (``--json-out`` also writes it). Exits 0
when every request succeeded, 3 when some failed (the report still prints), 2 on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .client import replay
from .report import format_table, summarize
from .trace import TraceFormatError, read_jsonl

__all__ = ["main"]


def _endpoints(args: argparse.Namespace) -> list[str]:
    urls = list(args.url)
    if args.endpoints_file:
        path = Path(args.endpoints_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read --endpoints-file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc.msg}); expected the list aibrix-engine-sim writes") from None
        if not isinstance(data, list) or not all(isinstance(e, (str, dict)) for e in data):
            raise ValueError(f"{path}: expected a JSON list of URLs or of objects with a 'url' key")
        for i, entry in enumerate(data):
            url = entry if isinstance(entry, str) else entry.get("url")
            if not isinstance(url, str):
                raise ValueError(f"{path}: entry {i} has no 'url'")
            urls.append(url)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8000")
    if not urls:
        raise ValueError("no endpoint given; pass --url URL (repeatable) or --endpoints-file FILE")
    return urls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aibrix-load", description="replay a trace against OpenAI endpoints (streaming)")
    p.add_argument("--trace", required=True, help="JSONL trace (python -m benchmarks.workloads writes one)")
    p.add_argument("--url", action="append", default=[], help="endpoint base URL (repeatable; round-robin)")
    p.add_argument("--endpoints-file", help="JSON list of URLs or of {'url': ...} (aibrix-engine-sim --endpoints-file)")
    p.add_argument("--api", choices=("completions", "chat"), default="completions")
    p.add_argument("--max-requests", type=int, default=None, help="send at most this many requests")
    p.add_argument("--duration-s", type=float, default=300.0, help="start no request after this many seconds")
    p.add_argument("--time-scale", type=float, default=1.0, help="replay arrivals this many times faster")
    p.add_argument("--max-concurrency", type=int, default=256)
    p.add_argument("--request-timeout-s", type=float, default=120.0)
    p.add_argument("--api-key", default=None, help="sent as 'Authorization: Bearer KEY' (e.g. to a gateway)")
    p.add_argument("--json-out", help="also write the summary JSON here")
    args = p.parse_args(argv)
    try:
        endpoints = _endpoints(args)
        trace = read_jsonl(args.trace)
        if not trace:
            raise ValueError(f"{args.trace}: the trace is empty")
        if args.max_requests is not None and args.max_requests < 1:
            raise ValueError(f"--max-requests must be >= 1, got {args.max_requests}")
        if args.duration_s <= 0:
            raise ValueError(f"--duration-s must be > 0, got {args.duration_s}")
        records, wall = asyncio.run(
            replay(
                trace, endpoints, api=args.api, max_requests=args.max_requests, duration_s=args.duration_s,
                time_scale=args.time_scale, max_concurrency=args.max_concurrency,
                request_timeout_s=args.request_timeout_s, api_key=args.api_key,
            )  # fmt: skip
        )
    except OSError as exc:
        print(f"error: cannot read trace {args.trace}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ValueError, TraceFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(records, wall)
    print(format_table(summary))
    line = json.dumps(summary, sort_keys=True)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n", encoding="utf-8")
    return 0 if summary["errors"] == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
