"""Usage counting from response bodies: JSON, SSE with and without the final usage chunk."""

import json

import pytest

from runtime_components.common.tokens import count_tokens
from runtime_components.gateway.usage import UsageCounter


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


DELTA = {"choices": [{"index": 0, "delta": {"content": "hello there"}}]}
CASES = [
    ("json with usage", b'{"choices": [{"text": "x"}], "usage": {"prompt_tokens": 11, "completion_tokens": 4}}',
     "application/json", (11, 4, True)),
    ("json chat without usage", json.dumps({"choices": [{"message": {"content": "one two three"}}]}).encode(),
     "application/json", (5, count_tokens("one two three"), False)),
    ("embeddings", b'{"data": [], "usage": {"prompt_tokens": 9, "total_tokens": 9}}', "application/json", (9, 0, True)),
    ("sse with final usage", sse(DELTA, DELTA, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}, b"[DONE]"),
     "text/event-stream", (3, 2, True)),
    ("sse without usage", sse(DELTA, DELTA, b"[DONE]"), "text/event-stream", (5, 2 * count_tokens("hello there"), False)),
    ("not json at all", b"<html>", "text/html", (5, 0, False)),
]


@pytest.mark.parametrize("name,body,content_type,expected", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_usage(name, body, content_type, expected, chunk):
    counter = UsageCounter(prompt_tokens_estimate=5)
    for start in range(0, len(body), chunk):
        counter.feed(body[start : start + chunk], content_type)
    usage = counter.result()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reported) == expected
