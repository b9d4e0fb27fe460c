"""The simulated engine answers in the same shapes as real vLLM 0.32 (recorded answers).

Shapes, not values: the keys the project's components and OpenAI clients read in
completions, chat completions, their server-sent-event chunks (including the final usage
chunk), the model list, and the error bodies for an unknown model and an adapter call. Metric families are pinned in
tests/engine_sim/test_server.py with the same recording.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from runtime_components.engine_sim.config import EngineConfig
from tests.contracts.families import RECORDED
from tests.engine_sim.helpers import with_cluster


def sse_chunks(text: str) -> list[Any]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: ") :]))
    assert text.rstrip().endswith("data: [DONE]")
    return out


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def top_keys_by_role(chunks: list[dict]) -> dict[str, set[str]]:
    """Keys of the first chunk, a middle chunk, and the usage chunk (choices == [])."""
    usage = [c for c in chunks if not c.get("choices")]
    assert len(usage) == 1, "exactly one final usage chunk"
    return {"first": set(chunks[0]), "usage": set(usage[0]), "usage.usage": set(usage[0]["usage"])}


def test_response_shapes_match_vllm() -> None:
    async def body(cluster, s: aiohttp.ClientSession) -> None:
        url = cluster.endpoints()[0]["url"]
        model = "llama-3-8b"
        async with s.post(url + "/v1/completions", json={"model": model, "prompt": "select users", "max_tokens": 2}) as r:
            assert r.status == 200
            got = await r.json()
        want = recorded("completion.json")
        assert set(got) >= {"id", "object", "created", "model", "choices", "usage"}
        assert set(got["choices"][0]) >= {"index", "text", "finish_reason"} and got["object"] == want["object"]
        assert set(got["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}

        async with s.post(url + "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}) as r:
            got = await r.json()
        want = recorded("chat_completion.json")
        assert got["object"] == want["object"]
        assert set(got["choices"][0]["message"]) >= {"role", "content"}

        stream_req = {"model": model, "messages": [{"role": "user", "content": "select users"}], "max_tokens": 3,
                      "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
        async with s.post(url + "/v1/chat/completions", json=stream_req) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            got_chunks = sse_chunks(await r.text())
        want_chunks = sse_chunks((RECORDED / "chat_completion_stream.txt").read_text())
        got_roles, want_roles = top_keys_by_role(got_chunks), top_keys_by_role(want_chunks)
        # vLLM adds prompt_tokens_details (cached tokens) with --enable-prompt-tokens-details; the
        # simulator always does, so it may carry more than the recording, never less
        assert want_roles["usage.usage"] <= got_roles["usage.usage"] <= want_roles["usage.usage"] | {"prompt_tokens_details"}
        assert {"id", "object", "created", "model", "choices"} <= got_roles["first"]
        assert got_chunks[0]["object"] == want_chunks[0]["object"] == "chat.completion.chunk"
        assert got_chunks[0]["choices"][0]["delta"].get("role") == "assistant"
        assert [c["choices"][0]["finish_reason"] for c in got_chunks if c.get("choices")][-1] == "length"

        async with s.get(url + "/v1/models") as r:
            models = await r.json()
        assert models["object"] == recorded("models.json")["object"] == "list"
        assert {"id", "object", "owned_by", "root", "parent"} <= set(models["data"][0])

        async with s.post(url + "/v1/completions", json={"model": "nope", "prompt": "x", "max_tokens": 2}) as r:
            assert r.status == 404
            err = await r.json()
        want_err = recorded("error_unknown_model.json")
        assert set(err["error"]) == set(want_err["error"])
        assert err["error"]["type"] == want_err["error"]["type"] and err["error"]["code"] == 404

        async with s.post(url + "/v1/load_lora_adapter", json={"lora_name": "sql", "lora_path": "/adapters/sql"}) as r:
            assert r.status == 200 and "added successfully" in await r.text()
        async with s.get(url + "/v1/models") as r:
            ids = {m["id"]: m.get("parent") for m in (await r.json())["data"]}
        assert ids["sql"] == model  # an adapter's parent is the base model, as in vLLM
        async with s.post(url + "/v1/unload_lora_adapter", json={"lora_name": "zzz"}) as r:
            assert r.status == 404
            assert set((await r.json())["error"]) == set(recorded("error_lora_load.json")["error"])

    with_cluster(body, [EngineConfig(max_loras=2, lora_load_s=0.01)], speedup=20.0)
