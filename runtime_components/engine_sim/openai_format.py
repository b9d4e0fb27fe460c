"""OpenAI/vLLM request parsing and response shapes for the simulated engine's HTTP API.

Where it sits: ``server.py`` handlers call ``parse_generation`` on a request body and build
answers with the ``*_response`` / ``*_chunk`` helpers. Shapes follow vLLM 0.32's recorded
answers (``tests/contracts/vllm_0_32``): ``cmpl-``/``chatcmpl-`` ids, ``system_fingerprint``,
``usage`` with prompt/completion/total tokens, errors as ``{"error": {"message", "type",
"param", "code"}}``. Chat messages are flattened with a plain ``role: content`` template
before tokenizing (the simulator has no model-specific template). Generated text is one
deterministic word per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime_components.common.tokens import tokenize

__all__ = ["GenerationRequest", "BadRequest", "parse_generation", "error_body", "token_text", "FINGERPRINT"]

FINGERPRINT = "vllm-0.32.0-engine-sim"
_OUTPUT_WORDS = (" the", " model", " says", " hello", " to", " you", " and", " all", " of", " us", ".")


class BadRequest(ValueError):
    """A request body the API refuses (HTTP 400), with the offending parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    chat: bool
    model: str
    prompt_token_ids: list[int]
    max_tokens: int
    stream: bool
    include_usage: bool
    priority: int = 0  #: vLLM's request priority (lower first; nonzero needs --scheduling-policy priority)


def error_body(message: str, kind: str, code: int, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def token_text(index: int) -> str:
    return _OUTPUT_WORDS[index % len(_OUTPUT_WORDS)]


def _chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {role, content} objects", "messages")
    lines = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise BadRequest(f"messages[{i}] must be an object with a role", "messages")
        content = message.get("content", "")
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string or a list of text parts", "messages")
        lines.append(f"{message['role']}: {content}")
    lines.append("assistant:")
    return "\n".join(lines)


def parse_generation(body: Any, *, chat: bool, max_model_len: int, priority_scheduling: bool = False) -> GenerationRequest:
    """Validate a /v1/completions or /v1/chat/completions body."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required (a string naming the base model or a loaded adapter)", "model")
    if chat:
        ids = tokenize(_chat_prompt(body.get("messages")))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = tokenize(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            ids = list(prompt)
        else:
            raise BadRequest("prompt must be a string or a list of token ids (batched prompts are not simulated)", "prompt")
    if not ids:
        raise BadRequest("the prompt is empty; expected at least one token", "prompt" if not chat else "messages")
    key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    default = max(1, max_model_len - len(ids)) if chat else 16
    max_tokens = body.get(key, default)
    if max_tokens is None:
        max_tokens = default
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest(f"{key} must be a positive integer, got {max_tokens!r}", key)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options") or {}
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise BadRequest(f"priority must be an integer, got {priority!r}", "priority")
    if priority != 0 and not priority_scheduling:  # vLLM refuses it the same way
        raise BadRequest(f"Got priority {priority} but priority scheduling is not enabled "
                         "(start the engine with --scheduling-policy priority)", "priority")
    return GenerationRequest(chat, model, ids, max_tokens, stream, include_usage, priority)


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }
    if cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return out


def full_response(req: GenerationRequest, rid: str, created: int, text: str, n_out: int, cached: int) -> dict[str, Any]:
    if req.chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None, "tool_calls": []},
            "logprobs": None,
            "finish_reason": "length",
            "stop_reason": None,
        }
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
    return {
        "id": rid,
        "object": "chat.completion" if req.chat else "text_completion",
        "created": created,
        "model": req.model,
        "choices": [choice],
        "system_fingerprint": FINGERPRINT,
        "usage": usage(len(req.prompt_token_ids), n_out, cached),
    }


def stream_chunk(
    req: GenerationRequest, rid: str, created: int, index: int, finish_reason: str | None
) -> dict[str, Any]:
    text = token_text(index)
    if req.chat:
        delta: dict[str, Any] = {"role": "assistant", "content": text} if index == 0 else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    if finish_reason is not None:
        choice["stop_reason"] = None
    return {
        "id": rid,
        "object": "chat.completion.chunk" if req.chat else "text_completion",
        "created": created,
        "model": req.model,
        "choices": [choice],
    }


def usage_chunk(req: GenerationRequest, rid: str, created: int, n_out: int, cached: int) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk" if req.chat else "text_completion",
        "created": created,
        "model": req.model,
        "choices": [],
        "usage": usage(len(req.prompt_token_ids), n_out, cached),
        "system_fingerprint": FINGERPRINT,
    }
