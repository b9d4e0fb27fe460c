"""The trace record and its JSONL form: what the load client replays.

Where it sits: the seeded generators in ``benchmarks.workloads`` write traces (that package
re-exports these names); ``aibrix-load`` replays them over HTTP; benchmarks replay them in
simulated time (``benchmarks.workloads.to_sim_requests``). A trace file has one JSON object per line,
keys sorted, arrival times rounded to the microsecond, so the same seed always gives the
same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["TraceRequest", "TraceFormatError", "dumps_jsonl", "write_jsonl", "read_jsonl"]


@dataclass(frozen=True)
class TraceRequest:
    """One request of a workload trace (text, not tokens: any OpenAI endpoint can replay it)."""

    request_id: str
    arrival_s: float
    model: str
    prompt: str
    max_tokens: int
    session_id: str | None = None
    user: str | None = None
    adapter: str | None = None  #: when set, the request's ``model`` is this adapter's name


class TraceFormatError(ValueError):
    """A trace file line is not a valid TraceRequest."""


_FIELDS = {f.name for f in fields(TraceRequest)}
_REQUIRED = {"request_id", "arrival_s", "model", "prompt", "max_tokens"}


def _line(req: TraceRequest) -> str:
    record = asdict(req)
    record["arrival_s"] = round(req.arrival_s, 6)
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def dumps_jsonl(trace: Iterable[TraceRequest]) -> str:
    return "".join(_line(r) + "\n" for r in trace)


def write_jsonl(trace: Iterable[TraceRequest], path: str | Path) -> None:
    Path(path).write_text(dumps_jsonl(trace), encoding="utf-8")


def read_jsonl(path: str | Path) -> list[TraceRequest]:
    """Parse a trace file; errors name the file, the line and what was expected."""
    out: list[TraceRequest] = []
    text = Path(path).read_text(encoding="utf-8")
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TraceFormatError(f"{where}: not valid JSON ({exc.msg}); expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise TraceFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = sorted(_REQUIRED - record.keys())
        unknown = sorted(record.keys() - _FIELDS)
        if missing or unknown:
            raise TraceFormatError(
                f"{where}: " + "; ".join(
                    ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                    + ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                ) + f"; expected fields: {', '.join(sorted(_FIELDS))}"
            )  # fmt: skip
        if not isinstance(record["max_tokens"], int) or record["max_tokens"] < 1:
            raise TraceFormatError(f"{where}: max_tokens must be a positive integer, got {record['max_tokens']!r}")
        if not isinstance(record["arrival_s"], (int, float)) or record["arrival_s"] < 0:
            raise TraceFormatError(f"{where}: arrival_s must be a number >= 0, got {record['arrival_s']!r}")
        if not isinstance(record["prompt"], str):
            raise TraceFormatError(f"{where}: prompt must be a string")
        out.append(TraceRequest(**record))
    return out
