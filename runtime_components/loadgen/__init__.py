"""Load client: replays JSONL traces against OpenAI-compatible endpoints (streaming) and
reports TTFT, TPOT/ITL, e2e latency percentiles, throughput and errors (``aibrix-load``)."""

from .client import LoadRecord, replay
from .report import format_table, latency_stats, summarize
from .trace import TraceFormatError, TraceRequest, dumps_jsonl, read_jsonl, write_jsonl

__all__ = [
    "LoadRecord",
    "TraceFormatError",
    "TraceRequest",
    "dumps_jsonl",
    "format_table",
    "latency_stats",
    "read_jsonl",
    "replay",
    "summarize",
    "write_jsonl",
]
