"""Parse the OpenAI request body the ext_proc server receives (buffered by Envoy).

Sits first in the request path: headers + body -> :class:`ParsedRequest` (or a 400/404
:class:`~runtime_components.gateway.errors.GatewayError`). Supports the three inference
endpoints; the prompt text is flattened the way the engine sees it (chat messages joined
in order), so prefix hashes of equal conversations agree with the engine's prefix cache.
Prompt tokens are counted with the shared approximate tokenizer (~4 chars per token).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from runtime_components.common.tokens import count_tokens, tokenize

from .errors import GatewayError, bad_request

try:  # the gateway extra installs it; without it the standard parser does all the work
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

__all__ = ["INFERENCE_PATHS", "LazyTokenIds", "ParsedRequest", "parse_request"]

#: path -> request kind
INFERENCE_PATHS: dict[str, str] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
_PROMPT_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
#: Deepest list/object nesting inside a prompt value (chat content parts are 2-3 levels); the
#: JSON decoder itself stops near Python's recursion limit, answered as a 400 too.
MAX_PROMPT_DEPTH = 32


#: Bodies with fewer opening brackets than this cannot nest deeper than the standard parser
#: goes (about the interpreter's recursion limit, 1000), so orjson, which has no depth limit
#: of its own in every version, may parse them.
_ORJSON_MAX_BRACKETS = 512


def _loads(body: bytes) -> Any:
    """``json.loads``, through orjson first (8x faster on a small request, and more on a long
    one). orjson is strict RFC 8259: whatever it refuses (NaN, integers beyond 64 bits, lone
    surrogates, bad input) goes to the standard parser, which decides and words the error;
    a body that could nest too deep goes there directly. So what the gateway accepts and
    answers does not depend on orjson."""
    if _orjson is not None and body.count(b"[") + body.count(b"{") < _ORJSON_MAX_BRACKETS:
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(body)


class LazyTokenIds(Sequence[int]):
    """The prompt's token ids, computed on first use: only prefix-aware policies read them,
    and tokenizing a long prompt costs more than the rest of the request path."""

    __slots__ = ("_text", "_ids", "_encode")

    def __init__(self, text: str, encode: Callable[[str], Sequence[int]] | None = None) -> None:
        self._text = text
        self._ids: Sequence[int] | None = None
        self._encode = encode or tokenize  # the model's exact tokenizer, when the config names one

    def _get(self) -> Sequence[int]:
        if self._ids is None:
            self._ids = self._encode(self._text)
        return self._ids

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return self._get()[index]

    def with_encoder(self, encode: Callable[[str], Sequence[int]]) -> LazyTokenIds:
        """The same prompt, tokenized by ``encode`` instead."""
        return LazyTokenIds(self._text, encode)

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[int]:
        return iter(self._get())


@dataclass(frozen=True)
class ParsedRequest:
    """What the gateway needs from one inference request."""

    kind: str
    model: str
    stream: bool
    prompt_text: str
    max_tokens: int | None
    prompt_tokens: int = field(default=0)
    prompt_token_ids: LazyTokenIds = field(default_factory=lambda: LazyTokenIds(""), compare=False, repr=False)


def _text_of(value: Any, where: str, depth: int = 0) -> str:
    """Flatten a prompt value (string, list of strings/token ids, chat content parts) to text."""
    if depth > MAX_PROMPT_DEPTH:
        raise bad_request(f"{where} nests lists or objects deeper than {MAX_PROMPT_DEPTH} levels")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts: list[str] = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                parts.append(f"<{item}>")  # a pre-tokenized prompt: keep ids distinguishable
            elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif isinstance(item, (list, dict)):
                parts.append(_text_of(item, where, depth + 1))
            else:
                raise bad_request(f"{where} holds a {type(item).__name__}; expected strings or token ids")
        return "\n".join(parts)
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return value["text"]
    raise bad_request(f"{where} is a {type(value).__name__}; expected a string or a list")


def _chat_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise bad_request('"messages" must be a non-empty list of {"role", "content"} objects')
    lines: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise bad_request(f'messages[{i}] must be an object with "role" and "content"')
        content = message.get("content")
        text = "" if content is None else _text_of(content, f"messages[{i}].content")
        lines.append(f"{message['role']}: {text}")
    return "\n".join(lines)


def parse_request(path: str, body: bytes) -> ParsedRequest:
    """Parse ``body`` sent to ``path`` (query string ignored).

    >>> parse_request("/v1/completions", b'{"model": "m", "prompt": "hi"}').model
    'm'
    """
    route = path.split("?", 1)[0].rstrip("/")
    kind = INFERENCE_PATHS.get(route)
    if kind is None:
        raise GatewayError(
            404,
            f"Unknown path {route or '/'}; the gateway serves {', '.join(INFERENCE_PATHS)} and GET /v1/models",
            "invalid_request_error",
            "unknown_url",
        )
    try:
        payload = _loads(body or b"")
    except RecursionError:
        raise bad_request("The request body nests JSON arrays or objects too deeply to parse; "
                          "an OpenAI request needs a few levels at most") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON ({exc.msg} at position {exc.pos})"
                          if isinstance(exc, json.JSONDecodeError) else "The request body is not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request('The request body has no "model" (a non-empty string naming the model or adapter)')
    field_name = _PROMPT_FIELD[kind]
    if field_name not in payload:
        raise bad_request(f'A {route} request needs "{field_name}"')
    text = _chat_text(payload[field_name]) if kind == "chat" else _text_of(payload[field_name], f'"{field_name}"')
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request('"stream" must be true or false')
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0):
        raise bad_request('"max_tokens" must be a non-negative integer')
    return ParsedRequest(kind, model, stream, text, max_tokens, count_tokens(text), LazyTokenIds(text))
