"""Parsing OpenAI request bodies: what the gateway extracts, and every refusal's message."""

import json

import pytest

from runtime_components.common.tokens import count_tokens, tokenize
from runtime_components.gateway.errors import GatewayError
from runtime_components.gateway.openai_request import parse_request

VALID = [
    ("/v1/completions", {"model": "m", "prompt": "hello world"}, "completions", "m", False, "hello world", None),
    ("/v1/completions?x=1", {"model": "m", "prompt": ["a", "b"], "max_tokens": 5}, "completions", "m", False, "a\nb", 5),
    ("/v1/chat/completions", {"model": "lora", "messages": [{"role": "user", "content": "hi"}], "stream": True},
     "chat", "lora", True, "user: hi", None),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                              "max_completion_tokens": 7}, "chat", "m", False, "user: x", 7),
    ("/v1/embeddings", {"model": "e", "input": "abc"}, "embeddings", "e", False, "abc", None),
    ("/v1/completions", {"model": "m", "prompt": [1, 2, 3]}, "completions", "m", False, "<1>\n<2>\n<3>", None),
]


@pytest.mark.parametrize("path,body,kind,model,stream,text,max_tokens", VALID)
def test_parse_valid(path, body, kind, model, stream, text, max_tokens):
    parsed = parse_request(path, json.dumps(body).encode())
    assert (parsed.kind, parsed.model, parsed.stream, parsed.prompt_text, parsed.max_tokens) == (
        kind, model, stream, text, max_tokens)
    assert parsed.prompt_tokens == count_tokens(text) == len(parsed.prompt_token_ids)
    assert list(parsed.prompt_token_ids) == tokenize(text) and parsed.prompt_token_ids[:2] == tokenize(text)[:2]


ERRORS = [
    ("/v1/completions", b"{", 400, 'not valid JSON'),
    ("/v1/completions", b"[1]", 400, "must be a JSON object"),
    ("/v1/completions", b'{"prompt": "x"}', 400, 'has no "model"'),
    ("/v1/completions", b'{"model": "m"}', 400, 'needs "prompt"'),
    ("/v1/chat/completions", b'{"model": "m", "messages": []}', 400, '"messages" must be a non-empty list'),
    ("/v1/chat/completions", b'{"model": "m", "messages": [{"content": "x"}]}', 400, 'messages[0] must be an object with "role"'),
    ("/v1/completions", b'{"model": "m", "prompt": "x", "stream": "yes"}', 400, '"stream" must be true or false'),
    ("/v1/completions", b'{"model": "m", "prompt": "x", "max_tokens": -1}', 400, '"max_tokens" must be a non-negative integer'),
    ("/v1/completions", b'{"model": "m", "prompt": 3.5}', 400, 'is a float; expected a string or a list'),
    ("/v1/completions", b"\xff\xfe", 400, "not"),
    ("/v2/whatever", b"{}", 404, "Unknown path /v2/whatever"),
]


@pytest.mark.parametrize("path,body,status,fragment", ERRORS)
def test_parse_errors(path, body, status, fragment):
    with pytest.raises(GatewayError) as info:
        parse_request(path, body)
    assert info.value.status == status
    assert fragment in info.value.message
    payload = json.loads(info.value.body())
    assert payload["error"]["message"] == info.value.message


# Bodies where orjson (the fast path) and the standard parser could disagree: each must parse,
# or be refused with the message, exactly as the standard parser alone would.
PARSER_EDGES = [
    b'{"model": "m", "prompt": "hi", "temperature": NaN}',  # not RFC 8259; json accepts it
    b'{"model": "m", "prompt": "hi", "seed": 123456789012345678901234567890}',  # beyond 64 bits
    b'{"model": "m", "prompt": "\\ud800"}',  # a lone surrogate
    b'{"model": "m", "model": "n", "prompt": "hi"}',  # a repeated key: the last wins
    b'{"model": "m", "prompt": "hi", "x": ' + b"[" * 600 + b"]" * 600 + b"}",  # deep, still parseable
    b'{"model": "m", "prompt": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # deeper than json goes
    b'{"model": "m", "prompt": "hi"',  # cut short
    b"\xef\xbb\xbf{}",  # a byte-order mark
    b"",
]


def _outcome(body: bytes) -> object:
    try:
        parsed = parse_request("/v1/completions", body)
    except GatewayError as error:
        return ("refused", error.status, error.message)
    return (parsed.model, parsed.prompt_text, parsed.prompt_tokens)


@pytest.mark.parametrize("body", PARSER_EDGES, ids=range(len(PARSER_EDGES)))
def test_the_fast_json_path_accepts_and_refuses_what_the_standard_parser_does(body, monkeypatch):
    import runtime_components.gateway.openai_request as module

    fast = _outcome(body)
    monkeypatch.setattr(module, "_orjson", None)
    assert fast == _outcome(body)


def test_the_fast_json_path_is_taken_when_orjson_is_installed():
    import runtime_components.gateway.openai_request as module

    assert module._orjson is not None, "the gateway extra installs orjson"
