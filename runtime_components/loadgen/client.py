"""Replay a trace against OpenAI-compatible endpoints with streaming, and time every token.

Where it sits: ``aibrix-load`` (``cli.py``) calls ``replay``; ``report.py`` turns the
records into percentiles. Each trace request is sent at ``arrival_s / time_scale`` seconds
after the start (open loop, like vLLM's ``benchmark_serving``), as a streaming
``/v1/completions`` (or ``/v1/chat/completions``) call with ``stream_options.include_usage``.
Endpoints are used round-robin in trace order (point it at a gateway to let the gateway
route, or at several engines directly). A trace's ``session_id`` travels as the
``x-session-id`` header and its ``user`` as the OpenAI ``user`` field; ``api_key`` becomes
``Authorization: Bearer`` (the gateway's users).

Bounded in count and time: at most ``max_requests`` requests, none started after
``duration_s``, at most ``max_concurrency`` in flight (later ones wait: their TTFT then
includes that client-side wait, which is reported separately as ``queued_s``), each one cut
off after ``request_timeout_s``.

Timing per request (monotonic clock): TTFT = first content chunk - send; ITL = gaps between
content chunks; TPOT = (last - first chunk) / (chunks - 1); e2e = end of stream - send.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .trace import TraceRequest

__all__ = ["LoadRecord", "replay"]


@dataclass
class LoadRecord:
    request_id: str
    endpoint: str
    scheduled_s: float  #: when the trace said to send it (after time scaling), from the run start
    sent_s: float | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int = 0
    cached_tokens: int | None = None
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def queued_s(self) -> float:
        return 0.0 if self.sent_s is None else max(0.0, self.sent_s - self.scheduled_s)

    @property
    def tpot_s(self) -> float | None:
        if not self.itl_s:
            return None
        return sum(self.itl_s) / len(self.itl_s)


def _payload(req: TraceRequest, api: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": req.model,
        "max_tokens": req.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "temperature": 0.0,
    }
    if api == "chat":
        body["messages"] = [{"role": "user", "content": req.prompt}]
    else:
        body["prompt"] = req.prompt
    if req.user:
        body["user"] = req.user
    return body


def _chunk_has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        if choice.get("text"):
            return True
        delta = choice.get("delta") or {}
        if delta.get("content"):
            return True
    return False


async def _one(
    session: aiohttp.ClientSession,
    req: TraceRequest,
    record: LoadRecord,
    api: str,
    timeout_s: float,
    t0: float,
    api_key: str | None,
) -> None:
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    headers = {"x-session-id": req.session_id} if req.session_id else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    sent = time.monotonic()
    record.sent_s = sent - t0
    last: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(record.endpoint + path, json=_payload(req, api), headers=headers) as resp:
                record.status = resp.status
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    try:
                        text = json.loads(text)["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        pass
                    record.error = f"HTTP {resp.status}: {text}"
                    return
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    chunk = json.loads(data)
                    now = time.monotonic()
                    if _chunk_has_token(chunk):
                        if last is None:
                            record.ttft_s = now - sent
                        else:
                            record.itl_s.append(now - last)
                        last = now
                        record.output_tokens += 1
                    usage = chunk.get("usage")
                    if usage:
                        record.prompt_tokens = usage.get("prompt_tokens")
                        record.output_tokens = usage.get("completion_tokens", record.output_tokens)
                        record.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        record.e2e_s = time.monotonic() - sent
        if record.ttft_s is None:
            record.error = "stream ended without a token"
    except TimeoutError:
        record.error = f"timeout after {timeout_s:g} s"
    except (aiohttp.ClientError, ConnectionError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:300]
    except json.JSONDecodeError as exc:
        record.error = f"bad SSE chunk: {exc.msg}"


async def replay(
    trace: Sequence[TraceRequest],
    endpoints: Sequence[str],
    *,
    api: str = "completions",
    max_requests: int | None = None,
    duration_s: float | None = None,
    time_scale: float = 1.0,
    max_concurrency: int = 256,
    request_timeout_s: float = 120.0,
    api_key: str | None = None,
) -> tuple[list[LoadRecord], float]:
    """Send the trace; returns the records (trace order) and the wall time the run took."""
    if not endpoints:
        raise ValueError("no endpoint to send to; give at least one base URL")
    if api not in ("completions", "chat"):
        raise ValueError(f"api must be 'completions' or 'chat', got {api!r}")
    if time_scale <= 0 or max_concurrency < 1 or request_timeout_s <= 0:
        raise ValueError("time_scale and request_timeout_s must be > 0 and max_concurrency >= 1")
    chosen = sorted(trace, key=lambda r: r.arrival_s)
    if max_requests is not None:
        chosen = chosen[:max_requests]
    if chosen:
        origin = chosen[0].arrival_s
        chosen = [r for r in chosen if duration_s is None or (r.arrival_s - origin) / time_scale <= duration_s]
    limit = asyncio.Semaphore(max_concurrency)
    base = [e.rstrip("/") for e in endpoints]
    connector = aiohttp.TCPConnector(limit=max_concurrency, force_close=False)
    records: list[LoadRecord] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.monotonic()
        origin = chosen[0].arrival_s if chosen else 0.0

        async def fire(i: int, req: TraceRequest) -> None:
            record = records[i]
            delay = t0 + record.scheduled_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with limit:
                await _one(session, req, record, api, request_timeout_s, t0, api_key)

        for i, req in enumerate(chosen):
            records.append(LoadRecord(req.request_id, base[i % len(base)], (req.arrival_s - origin) / time_scale))
        await asyncio.gather(*(fire(i, r) for i, r in enumerate(chosen)))
        wall = time.monotonic() - t0
    return records, wall
