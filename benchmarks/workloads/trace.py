"""The trace record and JSONL form (defined next to the load client that replays them,
``runtime_components.loadgen.trace``, and re-exported here), plus ``to_sim_requests``, which
tokenizes a trace for the discrete-event simulator."""

from __future__ import annotations

from collections.abc import Sequence

from runtime_components.common.tokens import tokenize
from runtime_components.engine_sim.config import SimRequest
from runtime_components.loadgen.trace import TraceFormatError, TraceRequest, dumps_jsonl, read_jsonl, write_jsonl

__all__ = ["TraceFormatError", "TraceRequest", "dumps_jsonl", "read_jsonl", "to_sim_requests", "write_jsonl"]


def to_sim_requests(trace: Sequence[TraceRequest]) -> list[SimRequest]:
    """Tokenize a trace for ``engine_sim`` (prompts become token ids; adapter and session kept)."""
    return [
        SimRequest(r.request_id, tokenize(r.prompt), r.max_tokens, r.arrival_s, adapter=r.adapter, session_id=r.session_id)
        for r in trace
    ]
