"""Counts a response's tokens from its body: OpenAI JSON or a Server-Sent-Events stream.

Engines report ``usage: {prompt_tokens, completion_tokens}``: in the JSON body, or for
streams in the final chunk when ``stream_options.include_usage`` is set. When a stream
carries no usage, completion tokens are estimated from the streamed text with the shared
approximate tokenizer and prompt tokens come from the gateway's own count of the prompt.
Bodies are fed chunk by chunk (Envoy streams them); memory stays bounded by keeping only
the unfinished SSE line, and at most ``max_json_bytes`` of a non-stream body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from runtime_components.common.tokens import count_tokens

__all__ = ["Usage", "UsageCounter"]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reported: bool  # True when the engine's own usage was seen

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _usage_of(payload: object) -> tuple[int, int] | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


def _text_of_choices(payload: object) -> str:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    parts: list[str] = []
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        for holder in (choice.get("delta"), choice.get("message"), choice):
            if isinstance(holder, dict):
                text = holder.get("content") if holder is not choice else holder.get("text")
                if isinstance(text, str):
                    parts.append(text)
    return "".join(parts)


class UsageCounter:
    """Feed response body chunks; ``result()`` gives the usage when the body has ended."""

    def __init__(self, prompt_tokens_estimate: int, max_json_bytes: int = 8 << 20) -> None:
        self._prompt_estimate = prompt_tokens_estimate
        self._max_json_bytes = max_json_bytes
        self._sse: bool | None = None
        self._buffer = bytearray()
        self._reported: tuple[int, int] | None = None
        self._streamed_completion = 0
        self.first_chunk_seen = False

    def feed(self, chunk: bytes, content_type: str = "") -> None:
        if not chunk:
            return
        self.first_chunk_seen = True
        if self._sse is None:
            self._sse = "text/event-stream" in content_type or chunk.lstrip().startswith(b"data:")
        if self._sse:
            self._buffer += chunk
            *lines, rest = self._buffer.split(b"\n")
            self._buffer = bytearray(rest)
            for line in lines:
                self._sse_line(line.strip())
        elif len(self._buffer) + len(chunk) <= self._max_json_bytes:
            self._buffer += chunk

    def _sse_line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return
        try:
            payload = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        reported = _usage_of(payload)
        if reported is not None:
            self._reported = reported
        text = _text_of_choices(payload)
        if text:
            self._streamed_completion += count_tokens(text)

    def result(self) -> Usage:
        """The usage of the whole body (call once the body has ended)."""
        if self._sse:
            if self._buffer:
                self._sse_line(bytes(self._buffer).strip())
                self._buffer.clear()
        elif self._buffer:
            try:
                payload = json.loads(self._buffer)
            except (json.JSONDecodeError, UnicodeDecodeError):
                payload = None
            reported = _usage_of(payload)
            if reported is not None:
                self._reported = reported
            else:
                self._streamed_completion = count_tokens(_text_of_choices(payload))
        if self._reported is not None:
            return Usage(self._reported[0], self._reported[1], True)
        return Usage(self._prompt_estimate, self._streamed_completion, False)
