"""One simulated vLLM engine behind an OpenAI-compatible aiohttp server.

Where it sits: ``cluster.EngineCluster`` starts many of these on one event loop (one port
each); ``aibrix-engine-sim`` is its CLI. An ``EngineServer`` owns an ``EngineCore`` and a
driver task that runs its steps in (scaled) real time: a step of ``d`` simulated seconds
takes ``d / speedup`` wall seconds, and simulated time is ``speedup x`` wall time since
start, so every latency in ``/metrics`` is in simulated seconds, as a real GPU would show.

Routes (vLLM's): ``POST /v1/completions``, ``POST /v1/chat/completions`` (JSON, or SSE with
``"stream": true``; a usage chunk when ``stream_options.include_usage``), ``GET /v1/models``,
``GET /health``, ``GET /metrics``, ``GET /version``, ``POST /v1/load_lora_adapter``,
``POST /v1/unload_lora_adapter``, ``POST /reset_prefix_cache``; and the simulator's own
``GET|POST /admin/faults`` (see ``faults.py``). With ``metrics_dialect="sglang"`` the engine
shows itself as SGLang where the stack reads it: ``/metrics`` under SGLang's names,
``/v1/models`` as SGLang lists it (the base model only, ``owned_by: sglang``; SGLang does
not list adapters there), and SGLang's ``GET /get_model_info``, ``GET /health_generate`` and
``POST /flush_cache``; generation and the LoRA API stay the same. A crash drops the connections of in-flight
requests without a status line (``_drop_on_crash``), so clients see what a dead process gives.

Prefill/decode roles (``pd_role``, ``pd.py``), as vLLM's NixlConnector pairs behave: a
``prefill`` engine answers a request whose ``kv_transfer_params`` say ``do_remote_decode``
after one output token, non-streaming, with the parameters a decode engine needs
(``pd.prefill_response_params``); a ``decode`` engine holds a request whose parameters name
a remote prefill for the transfer (``pd.transfer_seconds``: other requests keep stepping),
then runs it with that KV present and counts the transferred tokens as vLLM counts a
connector's tokens (``vllm:external_prefix_cache_queries``/``_hits``). Every role serves
requests without parameters whole, as vLLM's connectors do (a router's fallback).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from typing import Any

from aiohttp import web

from runtime_components.common.hashing import block_hashes

from .config import (
    EngineConfig,
    ExternalKVStore,
    RequestRejected,
    SimRequest,
    TokenEvent,
    UnknownAdapterError,
    prefix_salt,
)
from .core import EngineCore
from .faults import Faults
from .kv_publisher import KVEventPublisher, KVEventsSettings
from .metrics import METRIC_DIALECTS, render_metrics
from .openai_format import (
    BadRequest,
    GenerationRequest,
    error_body,
    full_response,
    parse_generation,
    stream_chunk,
    token_text,
    usage_chunk,
)
from .pd import DEFAULT_LINK_GBS, PD_ROLES, PdRole, decode_transfer, prefill_response_params, transfer_seconds

__all__ = ["EngineServer"]

_CRASHED = None  # queue sentinel: the engine died under the request
LAG_TOLERANCE_S = 0.010  #: wall seconds of timer/loop lateness absorbed between back-to-back steps


class EngineCrashed(Exception):
    """Raised under a request when its engine dies; ``_drop_on_crash`` then cuts the connection."""


@web.middleware
async def _drop_on_crash(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer nothing when the engine died under a request, as a dead process would.

    Letting the exception escape would make aiohttp send a 500. Instead the transport is
    aborted (the client sees a reset or a truncated stream) and a response object is
    returned: aiohttp cannot write it to the closed transport and treats the request as a
    client disconnect, so no status line ever reaches the client.
    """
    try:
        return await handler(request)
    except EngineCrashed:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=503, text="engine crashed")


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return web.json_response(error_body(message, kind, status, param), status=status)


class EngineServer:
    """A simulated engine and its HTTP app. ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        index: int = 0,
        speedup: float = 1.0,
        faults: Faults | None = None,
        seed: int = 0,
        external_kv_store: ExternalKVStore | None = None,
        metrics_dialect: str = "vllm",
        kv_events: KVEventsSettings | None = None,
        pd_role: PdRole = "both",
        pd_link_gbs: float = DEFAULT_LINK_GBS,
    ) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        if metrics_dialect not in METRIC_DIALECTS:
            raise ValueError(f"unknown metrics dialect {metrics_dialect!r}; expected one of: {', '.join(METRIC_DIALECTS)}")
        if pd_role not in PD_ROLES:
            raise ValueError(f"unknown pd role {pd_role!r}; expected one of: {', '.join(PD_ROLES)}")
        if pd_link_gbs <= 0:
            raise ValueError(f"the prefill-to-decode link must be faster than 0 GB/s, got {pd_link_gbs}")
        self.metrics_dialect = metrics_dialect
        self.pd_role = pd_role
        self.pd_link_gbs = pd_link_gbs
        self.host = "127.0.0.1"
        self.config = config
        self.index = index
        self.speedup = speedup
        self.core = EngineCore(config, external_kv_store=external_kv_store, record_kv_events=kv_events is not None)
        self._kv_events = kv_events
        self.kv_publisher: KVEventPublisher | None = None
        self.faults = Faults()
        self._rng = random.Random(f"{seed}-{index}")
        self._streams: dict[str, asyncio.Queue[TokenEvent | None]] = {}
        self._loading: set[str] = set()
        self._next_id = 0
        self._stale: bytes | None = None
        self._t0 = 0.0
        self._last_end = 0.0
        self._driver: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._wake: asyncio.Event | None = None
        self._unhang: asyncio.Event | None = None
        self.port = 0
        self.crashed = False
        self.max_loop_lag_s = 0.0  #: worst lateness of a step end seen (wall seconds): load indicator
        self._initial_faults = faults or Faults()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind ``host:port`` (0 = ephemeral) and start the engine; returns the bound port."""
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._wake, self._unhang = asyncio.Event(), asyncio.Event()
        self._unhang.set()
        self.host = host
        app = web.Application(middlewares=[_drop_on_crash])
        app.add_routes(
            [
                web.post("/v1/completions", self._completions),
                web.post("/v1/chat/completions", self._chat_completions),
                web.get("/v1/models", self._models),
                web.get("/health", self._health),
                web.get("/metrics", self._metrics),
                web.get("/version", self._version),
                web.post("/v1/load_lora_adapter", self._load_lora),
                web.post("/v1/unload_lora_adapter", self._unload_lora),
                web.post("/reset_prefix_cache", self._reset_prefix_cache),
                web.get("/admin/faults", self._get_faults),
                web.post("/admin/faults", self._post_faults),
            ]
        )
        if self.metrics_dialect == "sglang":
            app.add_routes(
                [
                    web.get("/get_model_info", self._model_info),
                    web.get("/health_generate", self._health),
                    web.post("/flush_cache", self._flush_cache),
                ]
            )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self._kv_events is not None and self.kv_publisher is None:
            self.kv_publisher = KVEventPublisher(self._kv_events, self.index)
        self._driver = asyncio.create_task(self._drive(), name=f"engine-{self.index}")
        self.set_faults(self._initial_faults)  # after binding, so a crash at start takes effect too
        return self.port

    async def stop(self) -> None:
        """Stop serving; in-flight requests see their connection close."""
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
            self._driver = None
        for queue in self._streams.values():
            queue.put_nowait(_CRASHED)
        if self._unhang is not None:
            self._unhang.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.kv_publisher is not None:
            self.kv_publisher.close()
            self.kv_publisher = None

    async def crash(self) -> None:
        self.crashed = True
        await self.stop()

    def sim_now(self) -> float:
        return (asyncio.get_running_loop().time() - self._t0) * self.speedup

    def set_faults(self, faults: Faults) -> None:
        if faults.metrics == "stale" and self.faults.metrics != "stale":
            self._stale = self._render_metrics()
        self.faults = faults
        self.core.slowdown_factor = faults.slowdown
        if self._unhang is not None:
            if faults.hang:
                self._unhang.clear()
            else:
                self._unhang.set()
        if faults.crash and not self.crashed and self._runner is not None:
            asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(self.crash()))

    # -- the engine driver ---------------------------------------------------------------

    async def _drive(self) -> None:
        assert self._wake is not None and self._unhang is not None
        loop = asyncio.get_running_loop()
        busy = False  # whether the previous step ran back to back with this one
        while True:
            if not self.core.has_work():
                busy = False
                self._wake.clear()
                await self._wake.wait()
            if not self._unhang.is_set():
                busy = False  # a hang is an idle gap: restart the clock at "now" afterwards
                await self._unhang.wait()
            # Back-to-back steps chain on simulated time, so timer overshoot of one sleep does
            # not accumulate into the next step, but never trail the wall clock by more than
            # LAG_TOLERANCE_S (a request cannot join a step that began long before it arrived);
            # after idling, the engine starts at "now".
            sim_now = self.sim_now()
            if busy:
                now = max(self._last_end, sim_now - LAG_TOLERANCE_S * self.speedup)
            else:
                now = max(sim_now, self._last_end)
            busy = True
            result = self.core.step(now)
            wall_end = self._t0 + result.end_s / self.speedup
            delay = wall_end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.max_loop_lag_s = max(self.max_loop_lag_s, loop.time() - wall_end)
            self._last_end = result.end_s
            self._publish_kv_events()
            for ev in result.events:
                queue = self._streams.get(ev.request_id)
                if queue is not None:
                    queue.put_nowait(ev)

    def _publish_kv_events(self) -> None:
        """What the step (or a cache reset) did to the prefix cache, as vLLM publishes it."""
        if self.kv_publisher is not None:
            self.kv_publisher.publish(self.core.take_kv_events())

    # -- generation ----------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        await self._gate()
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the request body is not valid JSON")
        try:
            req = parse_generation(body, chat=chat, max_model_len=self.config.max_model_len,
                                   priority_scheduling=self.config.scheduling_policy == "priority")
        except BadRequest as exc:
            return _error(400, str(exc), exc.param)
        adapter = None
        if req.model != self.config.served_model_name:
            if req.model not in self.core.adapters:
                valid = ", ".join([self.config.served_model_name, *self.core.adapters])
                return _error(404, f"The model `{req.model}` does not exist. Valid aliases: {valid}.", "model")
            adapter = req.model
        if self.faults.error_rate and self._rng.random() < self.faults.error_rate:
            return _error(500, "injected fault: internal server error (error_rate)")
        params = body.get("kv_transfer_params")
        params = params if isinstance(params, dict) else None
        remote_decode = self.pd_role == "prefill" and params is not None and bool(params.get("do_remote_decode"))
        if remote_decode:  # the prompt and one token; the decode engine generates the rest
            req = dataclasses.replace(req, max_tokens=1, stream=False, include_usage=False)
        transferred = decode_transfer(params, len(req.prompt_token_ids)) if self.pd_role == "decode" else 0
        self._next_id += 1
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{self.index:03d}{self._next_id:013x}"
        queue: asyncio.Queue[TokenEvent | None] = asyncio.Queue()
        self._streams[rid] = queue
        finished = False
        try:
            arrival = self.sim_now()
            # the API path before the scheduler sees the request (perf.Efficiency.request_overhead_s)
            await asyncio.sleep(self.core.model.efficiency.request_overhead_s / self.speedup)
            if transferred:
                transferred = await self._receive_kv(len(req.prompt_token_ids), transferred)
            try:
                self.core.add_request(SimRequest(rid, req.prompt_token_ids, req.max_tokens, arrival, adapter,
                                                 priority=req.priority, kv_transferred_tokens=transferred))
            except RequestRejected as exc:
                return _error(400, str(exc), "max_tokens")
            except UnknownAdapterError as exc:
                return _error(404, str(exc), "model")
            assert self._wake is not None
            self._wake.set()
            if req.stream:
                response, finished = await self._stream(request, req, rid, queue)
                return response
            response, finished = await self._collect(request, req, rid, queue, remote_decode=remote_decode,
                                                     adapter=adapter)
            return response
        finally:
            self._streams.pop(rid, None)
            if not finished:
                self.core.abort_request(rid)

    async def _receive_kv(self, prompt_tokens: int, transferred: int) -> int:
        """Wait for a remote prefill's KV (the link's time); returns the tokens the engine takes.

        The request is not yet in the engine, so its other requests keep stepping meanwhile
        (vLLM holds it in WAITING_FOR_REMOTE_KVS). The engine recomputes the prompt's last
        token, so at most ``prompt_tokens - 1`` arrive; they are counted as vLLM counts the
        tokens a KV connector supplies."""
        taken = min(transferred, prompt_tokens - 1)
        seconds = transfer_seconds(taken, self.core.model.arch.kv_bytes_per_token, self.pd_link_gbs)
        await asyncio.sleep(seconds / self.speedup)
        counters = self.core.counters
        counters.external_queries += prompt_tokens
        counters.external_hits += taken
        return taken

    def _prefill_params(self, req: GenerationRequest, adapter: str | None) -> dict[str, Any]:
        """Where a decode engine pulls this prompt's KV from: the prompt's blocks in the cache."""
        cfg = self.config
        hashes = block_hashes(req.prompt_token_ids, cfg.block_size, prefix_salt(cfg.served_model_name, adapter))
        return prefill_response_params(f"engine-sim-{self.host}:{self.port}", self.host, self.port,
                                       self.core.pool.cached_prefix(hashes), len(req.prompt_token_ids))

    async def _collect(
        self, request: web.Request, req: GenerationRequest, rid: str, queue: asyncio.Queue[TokenEvent | None],
        *, remote_decode: bool = False, adapter: str | None = None,
    ) -> tuple[web.StreamResponse, bool]:
        """The whole answer; a prefill for a remote decode (``remote_decode``) also
        carries the ``kv_transfer_params`` that tell a decode engine where its KV is."""
        parts: list[str] = []
        cached = 0
        while True:
            ev = await queue.get()
            if ev is _CRASHED:
                raise EngineCrashed
            parts.append(token_text(ev.index))
            cached = cached or ev.cached_tokens
            if ev.finished:
                body = full_response(req, rid, int(time.time()), "".join(parts), ev.index + 1, cached)
                if remote_decode:
                    body["kv_transfer_params"] = self._prefill_params(req, adapter)
                return web.json_response(body), True

    async def _stream(
        self, request: web.Request, req: GenerationRequest, rid: str, queue: asyncio.Queue[TokenEvent | None]
    ) -> tuple[web.StreamResponse, bool]:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        created = int(time.time())
        cached = 0
        while True:
            ev = await queue.get()
            if ev is _CRASHED:
                raise EngineCrashed  # mid-stream: the client sees the stream cut, not a [DONE]
            cached = cached or ev.cached_tokens
            chunk = stream_chunk(req, rid, created, ev.index, ev.finish_reason)
            data = b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            if ev.finished:
                if req.include_usage:
                    tail = usage_chunk(req, rid, created, ev.index + 1, cached)
                    data += b"data: " + json.dumps(tail, separators=(",", ":")).encode() + b"\n\n"
                data += b"data: [DONE]\n\n"
                await response.write(data)
                await response.write_eof()
                return response, True
            await response.write(data)

    async def _gate(self) -> None:
        """Hold the request while the engine is hung."""
        assert self._unhang is not None
        await self._unhang.wait()
        if self.crashed:
            raise EngineCrashed

    # -- other vLLM routes ---------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        await self._gate()
        created = int(time.time())

        if self.metrics_dialect == "sglang":  # SGLang's ModelCard: the base model only
            card = {"id": self.config.served_model_name, "object": "model", "created": created, "owned_by": "sglang",
                    "root": self.config.served_model_name, "max_model_len": self.config.max_model_len}
            return web.json_response({"object": "list", "data": [card]})

        def card(model_id: str, parent: str | None) -> dict[str, Any]:
            return {
                "id": model_id,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": model_id,
                "parent": parent,
                "max_model_len": self.config.max_model_len if parent is None else None,
                "permission": [],
            }

        base = self.config.served_model_name
        data = [card(base, None)] + [card(name, base) for name in self.core.adapters]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        await self._gate()
        return web.Response(status=200)

    async def _model_info(self, request: web.Request) -> web.Response:
        await self._gate()
        name = self.config.served_model_name
        return web.json_response({"model_path": name, "tokenizer_path": name, "is_generation": True,
                                  "preferred_sampling_params": None, "weight_version": "default"})

    async def _flush_cache(self, request: web.Request) -> web.Response:
        await self._gate()
        self.core.reset_prefix_cache()
        self._publish_kv_events()
        return web.Response(text="Cache flushed.\n")

    async def _version(self, request: web.Request) -> web.Response:
        await self._gate()
        return web.json_response({"version": "0.32.0+engine-sim"})

    def _render_metrics(self) -> bytes:
        cfg = self.config
        return render_metrics(
            self.core.stats(), model_name=cfg.served_model_name, engine="0", max_loras=cfg.max_loras,
            now_unix=time.time(), block_size=cfg.block_size, enable_prefix_caching=cfg.enable_prefix_caching,
            dialect=self.metrics_dialect,
        )  # fmt: skip

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._gate()
        if self.faults.metrics == "missing":
            return web.Response(status=404, text="404: Not Found")
        body = self._stale if self.faults.metrics == "stale" and self._stale is not None else self._render_metrics()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _json_object(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    async def _load_lora(self, request: web.Request) -> web.Response:
        await self._gate()
        try:
            body = await self._json_object(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if name in self.core.adapters or name in self._loading:
            return _error(400, f"The lora adapter '{name}' has already been loaded.")
        if len(self.core.adapters) + len(self._loading) >= self.config.max_loras:
            return _error(
                400,
                f"cannot load adapter '{name}': max_loras={self.config.max_loras} adapters are loaded or loading; "
                "unload one first",
            )
        self._loading.add(name)
        try:
            await asyncio.sleep(self.config.lora_load_s / self.speedup)
            self.core.load_adapter(name)
        finally:
            self._loading.discard(name)
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload_lora(self, request: web.Request) -> web.Response:
        await self._gate()
        try:
            body = await self._json_object(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        name = body.get("lora_name")
        if not isinstance(name, str) or not name:
            return _error(400, "'lora_name' must be provided.")
        try:
            self.core.unload_adapter(name)
        except UnknownAdapterError:
            return _error(404, f"The lora adapter '{name}' cannot be found.")
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def _reset_prefix_cache(self, request: web.Request) -> web.Response:
        await self._gate()
        self.core.reset_prefix_cache()
        self._publish_kv_events()
        return web.Response(status=200)

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults_json())

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            body = await self._json_object(request)
            faults = self.faults.updated(body)
        except ValueError as exc:
            return _error(400, f"bad fault settings: {exc}")
        self.set_faults(faults)
        return web.json_response(self._faults_json())

    def _faults_json(self) -> dict[str, Any]:
        f = self.faults
        return {"slowdown": f.slowdown, "error_rate": f.error_rate, "hang": f.hang, "crash": f.crash, "metrics": f.metrics}
