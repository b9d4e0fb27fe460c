"""The model's own tokenizer (models[].tokenizerFile): completions prompts hashed from the ids
the engine sees, so kv-events matches; chat keeps the approximate ids; a bad file is one error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.common.hashing import block_hashes
from runtime_components.common.tokens import tokenize
from runtime_components.gateway.app import GatewayApp
from runtime_components.gateway.exact_tokens import ExactTokenizer, TokenizerFileError

tokenizers = pytest.importorskip("tokenizers")


def _tokenizer_json(folder: Path) -> Path:
    """A word-level tokenizer that adds <s> like a Llama tokenizer does."""
    words = ["<unk>", "<s>"] + [f"w{i}" for i in range(64)]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


def _app(tmp_path: Path, tokenizer_file: str | None) -> GatewayApp:
    endpoints = tmp_path / "endpoints.yaml"
    endpoints.write_text(yaml.safe_dump({"endpoints": [{"address": "127.0.0.1:9", "model": "m"}]}))
    model = {"name": "m", "kvEventsPort": 5557, "routing": {
        "policy": "prefix-cache-aware", "parameters": {"prefixCacheAware": {"index": "kv-events"}}}}
    if tokenizer_file is not None:
        model["tokenizerFile"] = tokenizer_file
    return GatewayApp(GatewayConfig.model_validate({
        "discovery": {"mode": "static", "endpointsFile": str(endpoints)}, "models": [model]}))


def test_completions_prompts_use_the_engines_ids(tmp_path: Path) -> None:
    path = _tokenizer_json(tmp_path)
    prompt = " ".join(f"w{i % 64}" for i in range(40))
    expected = [1] + [2 + i % 64 for i in range(40)]
    assert ExactTokenizer(str(path)).ids(prompt) == expected
    app = _app(tmp_path, str(path))

    async def admit(path: str, body: dict) -> list[int]:
        admission = await app.core.admit(app.core.authenticate({}), path, {}, json.dumps(body).encode())
        return list(admission.route_request.token_ids)

    async def both() -> tuple[list[int], list[int]]:
        app.discovery.load()
        try:
            return (await admit("/v1/completions", {"model": "m", "prompt": prompt}),
                    await admit("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": prompt}]}))
        finally:
            await app.kv_events["m"].close()

    completions, chat = asyncio.run(both())
    assert completions == expected
    assert chat == tokenize(f"user: {prompt}")  # the chat template is not reproduced: approximate ids
    # what the engine would report for this prompt, the index can now find
    index = app.core.event_indexes["m"]
    index.add(block_hashes(expected, 16, "m"), "127.0.0.1:9")
    assert index.matched_blocks(block_hashes(expected, 16, "m"), ["127.0.0.1:9"])["127.0.0.1:9"] == 2


def test_a_bad_tokenizer_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(TokenizerFileError, match=r'model "m": tokenizerFile .*tokenizer.json: not a tokenizer.json'):
        _app(tmp_path, str(bad))
