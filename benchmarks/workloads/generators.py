"""Seeded workload generators: what requests say. Arrival times come from ``arrivals``.

Each generator takes the arrival times and a seeded ``random.Random`` and returns
``TraceRequest`` records; the same seed gives the same trace (and the same JSONL bytes).

- ``chat_sessions``: multi-turn chat. Each arrival continues an open session with
  probability ``continue_prob`` (a session closes after ``max_turns`` turns or when its
  history passes ``max_context_tokens``), else opens a new one. A prompt is the session's
  system prompt, its whole history (user turns and the assistant's answers, ``max_tokens``
  tokens each) and the new user turn, so consecutive turns share a growing prefix.
  Lengths are ShareGPT-like (``text.sharegpt_*``).
- ``bird_sql``: text-to-SQL in the style of Bird-SQL: ``n_databases`` schemas of about
  ``schema_tokens`` tokens each (CREATE TABLE statements), many short questions per
  database. Databases are picked with Zipf popularity (exponent ``db_zipf``), so popular
  schemas are long shared prefixes.
- ``unique_prompts``: no sharing at all (a random nonce leads every prompt).
- ``assign_zipf_adapters``: rewrites a trace so requests use LoRA adapters with Zipf
  popularity (rank r chosen with probability proportional to ``1 / r^s``); a session keeps
  its adapter; ``base_fraction`` of sessions/requests stay on the base model.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from runtime_components.common.tokens import count_tokens

from .text import WORDS, lognormal_len, sharegpt_input_len, sharegpt_output_len, words
from .trace import TraceRequest

__all__ = ["chat_sessions", "bird_sql", "unique_prompts", "assign_zipf_adapters", "zipf_weights", "schema_text"]


def zipf_weights(n: int, s: float) -> list[float]:
    """Normalised Zipf weights of ranks 1..n with exponent ``s``."""
    if n < 1:
        raise ValueError(f"need at least one item for a Zipf distribution, got {n}")
    if s < 0:
        raise ValueError(f"Zipf exponent must be >= 0, got {s}")
    raw = [1.0 / (rank**s) for rank in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


@dataclasses.dataclass
class _Session:
    session_id: str
    user: str
    history: list[str]
    history_tokens: int
    turns: int


def chat_sessions(
    arrival_times: Sequence[float],
    rng: random.Random,
    *,
    model: str,
    system_prompt_tokens: int = 60,
    continue_prob: float = 0.7,
    max_turns: int = 8,
    max_context_tokens: int = 6000,
    max_open_sessions: int = 64,
) -> list[TraceRequest]:
    if not 0 <= continue_prob <= 1:
        raise ValueError(f"continue_prob must be in [0, 1], got {continue_prob}")
    system = "system: you are a helpful model. " + words(system_prompt_tokens, rng)
    open_sessions: list[_Session] = []
    out: list[TraceRequest] = []
    for i, t in enumerate(arrival_times):
        if open_sessions and rng.random() < continue_prob:
            session = open_sessions[rng.randrange(len(open_sessions))]
        else:
            session = _Session(f"s{i:06d}", f"user-{rng.randrange(1000):03d}", [system], system_prompt_tokens, 0)
            open_sessions.append(session)
            if len(open_sessions) > max_open_sessions:
                open_sessions.pop(0)
        user_len = min(sharegpt_input_len(rng), 1024)
        answer_len = sharegpt_output_len(rng)
        turn = "user: " + words(user_len, rng)
        prompt = "\n".join([*session.history, turn, "assistant:"])
        out.append(TraceRequest(f"chat-{i:06d}", t, model, prompt, answer_len, session.session_id, session.user))
        session.history += [turn, "assistant: " + words(answer_len, rng)]
        session.history_tokens += user_len + answer_len + 4
        session.turns += 1
        if session.turns >= max_turns or session.history_tokens > max_context_tokens:
            open_sessions.remove(session)
    return out


def schema_text(database: int, tokens: int, rng: random.Random) -> str:
    """A deterministic CREATE TABLE schema of about ``tokens`` tokens for one database."""
    parts = [f"-- database db{database:03d}"]
    size = count_tokens(parts[0])
    table = 0
    while size < tokens:
        cols = ", ".join(f"{rng.choice(WORDS)}_{c} int" for c in range(rng.randint(4, 10)))
        stmt = f"create table t{table}_{rng.choice(WORDS)} ({cols});"
        parts.append(stmt)
        size += count_tokens(stmt) + 1
        table += 1
    return "\n".join(parts)


def bird_sql(
    arrival_times: Sequence[float],
    rng: random.Random,
    *,
    model: str,
    n_databases: int = 8,
    schema_tokens: int = 1000,
    db_zipf: float = 0.8,
    question_tokens: tuple[int, int] = (15, 60),
    answer_tokens: tuple[int, int] = (20, 120),
) -> list[TraceRequest]:
    schemas = [schema_text(d, schema_tokens, random.Random(f"schema-{d}-{rng.random()}")) for d in range(n_databases)]
    weights = zipf_weights(n_databases, db_zipf)
    out: list[TraceRequest] = []
    for i, t in enumerate(arrival_times):
        db = rng.choices(range(n_databases), weights)[0]
        question = words(rng.randint(*question_tokens), rng)
        prompt = f"{schemas[db]}\n-- translate to sql for db{db:03d}:\n-- question: {question}\nselect"
        out.append(TraceRequest(f"sql-{i:06d}", t, model, prompt, rng.randint(*answer_tokens), None, f"db{db:03d}"))
    return out


def unique_prompts(
    arrival_times: Sequence[float],
    rng: random.Random,
    *,
    model: str,
    median_input: float = 150,
    median_output: float = 180,
) -> list[TraceRequest]:
    out: list[TraceRequest] = []
    for i, t in enumerate(arrival_times):
        n_in = lognormal_len(rng, median_input, 1.0, 4, 4000)
        n_out = lognormal_len(rng, median_output, 0.8, 4, 1024)
        prompt = f"{rng.getrandbits(64):016x} " + words(n_in, rng)
        out.append(TraceRequest(f"uniq-{i:06d}", t, model, prompt, n_out))
    return out


def assign_zipf_adapters(
    trace: Sequence[TraceRequest],
    adapters: Sequence[str],
    rng: random.Random,
    *,
    s: float = 1.0,
    base_fraction: float = 0.0,
) -> list[TraceRequest]:
    if not adapters:
        raise ValueError("assign_zipf_adapters needs at least one adapter name")
    if not 0 <= base_fraction <= 1:
        raise ValueError(f"base_fraction must be in [0, 1], got {base_fraction}")
    weights = zipf_weights(len(adapters), s)
    chosen: dict[str, str | None] = {}
    out: list[TraceRequest] = []
    for req in trace:
        key = req.session_id or req.request_id
        if key not in chosen:
            chosen[key] = None if rng.random() < base_fraction else rng.choices(adapters, weights)[0]
        adapter = chosen[key]
        out.append(req if adapter is None else dataclasses.replace(req, model=adapter, adapter=adapter))
    return out
