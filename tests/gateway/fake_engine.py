"""A small vLLM-shaped HTTP engine for the gateway's tests, run on its own thread.

Serves /v1/chat/completions, /v1/completions (JSON or SSE with a final usage chunk),
/v1/embeddings, /v1/models (base model plus adapters with ``parent``) and /metrics with
vLLM's metric names. Every response carries ``x-served-by: <name>`` and the engine counts
what it served, so tests can check which endpoint the gateway chose. ``kill()`` closes the
listening socket and every open connection, like a crashed pod.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

from aiohttp import web

from runtime_components.common.tokens import count_tokens


@dataclass
class EngineStats:
    served: int = 0
    models: list[str] = field(default_factory=list)
    target_pods: list[str] = field(default_factory=list)  # the gateway's choice, as the engine received it
    traceparents: list[str] = field(default_factory=list)  # W3C trace context as received ("" when none)


class FakeEngine:
    """One engine on 127.0.0.1:<free port>, serving ``model`` and ``adapters``."""

    def __init__(self, name: str, model: str, adapters: tuple[str, ...] = (), tokens_out: int = 8,
                 delay_s: float = 0.0, running: int = 0) -> None:
        self.name, self.model, self.adapters = name, model, adapters
        self.tokens_out, self.delay_s, self.running_gauge = tokens_out, delay_s, running
        self.stats = EngineStats()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"engine-{name}", daemon=True)
        self._running = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeEngine:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def kill(self) -> None:
        """Stop abruptly: no new connections, open ones dropped."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def stop(self) -> None:
        self.kill()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.stats.served += 1
        self.stats.models.append(body.get("model", ""))
        self.stats.target_pods.append(request.headers.get("target-pod", ""))
        self.stats.traceparents.append(request.headers.get("traceparent", ""))
        prompt = body.get("prompt") or " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        prompt_tokens = count_tokens(str(prompt))
        n = min(int(body.get("max_tokens") or self.tokens_out), self.tokens_out)
        headers = {"x-served-by": self.name}
        self._running += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
            if not body.get("stream"):
                return web.json_response({"id": "cmpl-1", "object": "text_completion", "model": body.get("model"),
                                          "choices": [{"index": 0, "text": "tok " * n, "finish_reason": "length"}],
                                          "usage": usage}, headers=headers)
            response = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
            await response.prepare(request)
            for _ in range(n):
                chunk = {"choices": [{"index": 0, "delta": {"content": "tok "}}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if (body.get("stream_options") or {}).get("include_usage"):
                await response.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        finally:
            self._running -= 1

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.stats.served += 1
        tokens = count_tokens(str(body.get("input")))
        return web.json_response({"object": "list", "data": [{"embedding": [0.0, 1.0]}],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                                 headers={"x-served-by": self.name})

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": self.model, "object": "model", "root": self.model, "parent": None}]
        data += [{"id": a, "object": "model", "root": "/adapters/" + a, "parent": self.model} for a in self.adapters]
        return web.json_response({"object": "list", "data": data})

    async def _metrics(self, request: web.Request) -> web.Response:
        m = f'{{model_name="{self.model}"}}'
        text = (
            f"vllm:num_requests_running{m} {self._running + self.running_gauge}\n"
            f"vllm:num_requests_waiting{m} 0\n"
            f"vllm:kv_cache_usage_perc{m} 0.1\n"
            f'vllm:lora_requests_info{{max_lora="2",running_lora_adapters="{",".join(self.adapters)}",waiting_lora_adapters=""}} 1\n'
        )
        return web.Response(text=text)
