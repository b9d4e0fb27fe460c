"""Seeded workload traces: arrival processes x request generators, saved as JSONL.

``make_trace(kind=..., arrival=..., rate=..., n=..., seed=...)`` is the one-call entry point
(also behind ``python -m benchmarks.workloads``); the pieces are in ``arrivals``,
``generators``, ``text`` and ``trace``.
"""

from .arrivals import diurnal, gamma_bursty, poisson
from .generators import assign_zipf_adapters, bird_sql, chat_sessions, unique_prompts, zipf_weights
from .make import ARRIVALS, KINDS, make_trace
from .trace import TraceFormatError, TraceRequest, dumps_jsonl, read_jsonl, to_sim_requests, write_jsonl

__all__ = [
    "ARRIVALS",
    "KINDS",
    "TraceFormatError",
    "TraceRequest",
    "assign_zipf_adapters",
    "bird_sql",
    "chat_sessions",
    "diurnal",
    "dumps_jsonl",
    "gamma_bursty",
    "make_trace",
    "poisson",
    "read_jsonl",
    "to_sim_requests",
    "unique_prompts",
    "write_jsonl",
    "zipf_weights",
]
