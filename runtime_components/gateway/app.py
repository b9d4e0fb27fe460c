"""Wires one gateway process: config -> discovery, scraper, users, limiter, core, servers.

``GatewayApp.start()`` binds the ext_proc gRPC server (with the gRPC health service) and the
HTTP server (``/metrics``, ``/healthz``, ``/v1/models``), loads endpoints and starts the
background tasks; ``stop()`` undoes all of it. Ports of 0 pick free ports; the bound ones
are in ``grpc_port`` and ``http_port`` after ``start()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.common.file_stamp import FileStamp, file_stamp

from .core import GatewayCore
from .discovery.static import StaticDiscovery
from .endpoints import DiscoveredEndpoint, EndpointTable
from .extproc import EXT_PROC_PATH, ExtProcServicer, ExtProcSession
from .h2_server import H2GrpcServer, SessionMethod, UnaryMethod
from .health import CHECK_PATH, check_answer, health_handler
from .kv_events import EventTranslator, KVEventSubscriber
from .metrics import GatewayMetrics
from .pd import PdConfigError, PrefillDecode, prefill_pool, role_specs
from .ratelimit import MemoryWindowStore, RateLimiter, RedisWindowStore
from .ratelimit.breaker import BreakerStore
from .ratelimit.stores import WindowStore
from .routes import RoutesFileError, load_routes
from .routing_sync import HUB_SOCKET_ENV, HubTransport, RedisStreamTransport, RoutingSync, Transport
from .scraper import MetricScraper
from .users import UserDirectory

__all__ = ["GRPC_SERVER_OPTIONS", "GatewayApp", "StartupError"]

log = logging.getLogger(__name__)


#: Per-call bookkeeping the gateway does not use is switched off (channelz tracing, census
#: stats); BDP pings are pointless on Envoy's long-lived local HTTP/2 connection. Measured in
#: docs/gateway.md ("Per-request cost").
GRPC_SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),
    ("grpc.enable_channelz", 0),
    ("grpc.census", 0),
    ("grpc.http2.bdp_probe", 0),
)


#: Added to the body limit for the gRPC receive limit: request headers and protobuf framing.
GRPC_HEADROOM_BYTES = 1 << 20


class StartupError(ValueError):
    """A file the config names cannot be used; the message says which and why."""


def _tracing_unavailable(exc: ImportError) -> str:
    """Why ``tracing`` cannot start, and the fix."""
    if "opentelemetry.proto" in str(exc):
        from importlib.metadata import PackageNotFoundError, version

        try:
            pin = f"=={version('opentelemetry-proto')}"
        except PackageNotFoundError:
            pin = ""
        return (f"tracing: the OTLP exporter cannot be imported ({exc}): xds-protos, which the gateway installs for "
                f"Envoy's protobufs, overwrote opentelemetry-proto's files with an old copy; reinstall them with "
                f"`pip install --force-reinstall --no-deps opentelemetry-proto{pin}` "
                f"(scripts/restore-otel-proto does this)")
    return (f"tracing: the OpenTelemetry SDK or its OTLP exporter is not installed ({exc}); "
            f"install the gateway extra (pip install 'aibrix-stack[gateway]') or remove `tracing`")


def _read_secret(path: str | None, field: str = "rateLimits.redisPasswordFile") -> str | None:
    """A secret mounted as a file (trailing newline dropped)."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\n")
    except OSError as exc:
        raise StartupError(f"{field} {path}: cannot read it ({exc.strerror})") from None


def _routing_sync(config: GatewayConfig) -> RoutingSync | None:
    """The routing-state sync the config asks for: Redis (every replica), the pod's hub (its
    workers), or none (this process alone)."""
    spec = config.routing_state
    transport: Transport
    if spec.redis_url:
        transport = RedisStreamTransport(spec.redis_url, key=spec.stream_key, maxlen=spec.stream_max_len,
                                         password=_read_secret(spec.redis_password_file, "routingState.redisPasswordFile"))
    elif spec.hub_socket or os.environ.get(HUB_SOCKET_ENV):
        # a worker of `aibrix-gateway --workers N`: its siblings share state through the pod's hub
        transport = HubTransport(spec.hub_socket or os.environ[HUB_SOCKET_ENV])
    else:
        return None
    return RoutingSync(transport, flush_interval_s=spec.flush_interval_ms / 1000, max_blocks=spec.max_blocks_per_event,
                       warm_start_batches=spec.warm_start_batches)


class GatewayApp:
    """One gateway process's servers and background tasks."""

    def __init__(self, config: GatewayConfig, *, kubernetes_api_client: Any = None,
                 kubernetes_watch_timeout_s: int = 30, http_host: str | None = None) -> None:
        self.config = config
        # A worker of a pod serves its page on loopback only: the supervisor merges it.
        self._http_host = http_host or config.listen.host
        self.metrics = GatewayMetrics()
        self.table = EndpointTable(config.scrape.staleness_s)
        limits = config.rate_limits
        self.users = UserDirectory(limits.users_file, set(limits.tiers), limits.default_tier)
        store: WindowStore
        self._redis: RedisWindowStore | None = None
        if limits.redis_url:
            self._redis = RedisWindowStore(limits.redis_url, limits.window_s, timeout_s=limits.redis_timeout_ms / 1000,
                                           password=_read_secret(limits.redis_password_file))
            store = BreakerStore(self._redis, timeout_s=limits.redis_timeout_ms / 1000,
                                 failures=limits.redis_breaker_failures, cooldown_s=limits.redis_breaker_cooldown_s)
        else:
            store = MemoryWindowStore(limits.window_s)
        self._store = store
        self.limiter = RateLimiter(dict(limits.tiers), store, limits.window_s)
        self.sync = _routing_sync(config)
        self.tracer = None
        if config.tracing is not None:
            from .tracing import RequestTracer  # opentelemetry-sdk: loaded only when tracing is on

            try:
                self.tracer = RequestTracer(config.tracing.otlp_endpoint, config.tracing.sampling_ratio,
                                            service_name=config.tracing.service_name)
            except ImportError as exc:
                raise StartupError(_tracing_unavailable(exc)) from None
        self.core = GatewayCore(config, self.table, self.users, self.limiter, self.metrics,
                                state=self.sync.state if self.sync is not None else None, tracer=self.tracer)
        try:
            self.pd = PrefillDecode(config, self.table, self.metrics, state=self.core.state, tracer=self.tracer)
            if any(m.disaggregation is not None for m in config.models):
                self.core.widen_pool = self.pd.short_pool
        except PdConfigError as exc:
            raise StartupError(str(exc)) from None
        self.routes_error: str | None = None
        self._routes_stamp: FileStamp | None = None
        if config.routes_file is not None:
            try:
                self._load_routes(config.routes_file)
            except (OSError, RoutesFileError) as exc:
                raise StartupError(f"routesFile: {exc}") from None
        self.scraper = MetricScraper(self.table, config.scrape.interval_s, config.scrape.timeout_s,
                                     engines={m.name: m.engine for m in role_specs(config.models)})
        # kv-events index mode: one subscriber per model, fed to that model's shared event index
        self.kv_events: dict[str, KVEventSubscriber] = {}
        for m in config.models:
            index = self.core.event_indexes.get(m.name)
            if index is not None:
                params = m.routing.parameters.prefix_cache_aware
                translator = EventTranslator(index, m.name, params.block_size_tokens, params.max_index_blocks)
                self.kv_events[m.name] = KVEventSubscriber(translator)
                self.metrics.track_kv_events(m.name, translator.counters)
        models = {m.name for m in config.models}
        self.discovery: Any
        if config.discovery.mode == "static":
            assert config.discovery.endpoints_file is not None
            self.discovery = StaticDiscovery(config.discovery.endpoints_file, models, self._publish,
                                             config.discovery.poll_interval_s,
                                             prefill_models={m.name for m in config.models if m.disaggregation})
        else:
            from .discovery.kubernetes import KubernetesDiscovery

            self.discovery = KubernetesDiscovery(kubernetes_api_client, config.discovery.namespace, list(config.models),
                                                 self._publish, watch_timeout_s=kubernetes_watch_timeout_s)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: grpc.aio.Server | H2GrpcServer | None = None
        self._http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    # -- discovery callback ----------------------------------------------------------------
    def _publish(self, endpoints: list[DiscoveredEndpoint]) -> None:
        added, removed = self.table.replace(endpoints)
        for address in removed:
            self.core.endpoint_removed(address)
            self.pd.endpoint_removed(address)
        if added or removed:
            log.info("endpoints: +%s -%s", added, removed)
        self._update_endpoint_gauges()
        if self.kv_events:
            self._follow_kv_events(endpoints)

    def _follow_kv_events(self, endpoints: list[DiscoveredEndpoint]) -> None:
        ports = {m.name: m.kv_events_port for m in self.config.models}
        for model, subscriber in self.kv_events.items():
            wanted: dict[str, str] = {}
            for e in endpoints:
                port = e.kv_events_port or ports[model]
                if e.model == model and port:
                    host = e.address.rpartition(":")[0]
                    wanted[e.address] = f"tcp://{host}:{port}"
            subscriber.set_endpoints(wanted)

    def _update_endpoint_gauges(self) -> None:
        now = time.monotonic()
        for model in self.config.models:
            up, down = self.table.states(model.name, now)
            self.metrics.endpoints.labels(model.name, "up").set(len(up))
            self.metrics.endpoints.labels(model.name, "down").set(down)
            if model.disaggregation is not None:  # its prefill pods, kept apart from the decode pods above
                up, down = self.table.states(prefill_pool(model.name), now)
                self.metrics.endpoints.labels(model.name, "prefill_up").set(len(up))
                self.metrics.endpoints.labels(model.name, "prefill_down").set(down)

    # -- HTTP ------------------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        self._update_endpoint_gauges()
        if self.sync is not None:
            self.metrics.observe_sync(self.sync.stats)
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _healthz(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        report = {
            "status": "ok",
            "endpoints": {m.name: len(self.table.states(m.name, now)[0]) for m in self.config.models},
            "prefillEndpoints": {m.name: len(self.table.states(prefill_pool(m.name), now)[0])
                                 for m in self.config.models if m.disaggregation},
            "discoveryError": getattr(self.discovery, "last_error", None),
            "usersFileError": self.users.last_error,
            "routesFileError": self.routes_error,
            "routes": {name: self.core.routes.weights(name) for name in self.core.routes.names()},
            "scrapeRounds": self.scraper.rounds,
        }
        return web.json_response(report)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(self.core.models_listing())

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        host = self.config.listen.host
        if self._redis is not None:
            await self._redis.ping()  # fail at start-up, not on the first request
        if isinstance(self.discovery, StaticDiscovery):
            self.discovery.load()
        # Envoy sends the whole buffered body in one message: the receive limit is the body limit
        # plus room for headers and framing (gRPC's 4 MiB default turned 4-8 MiB bodies into 500s).
        limit = self.config.max_request_body_bytes + GRPC_HEADROOM_BYTES
        servicer = ExtProcServicer(self.core, self.pd)
        if self.config.listen.grpc_server == "builtin":
            async def check(request: bytes) -> bytes:
                return check_answer(request, not self._stop.is_set())

            builtin = H2GrpcServer({
                # driven message by message, no task per stream while nothing waits
                EXT_PROC_PATH: SessionMethod(lambda: ExtProcSession(servicer), ProcessingRequest.FromString),
                CHECK_PATH: UnaryMethod(check),
            }, max_receive_message_length=limit)
            self.grpc_port = await builtin.start(host, self.config.listen.grpc_port)
            self._grpc = builtin
        else:
            server = grpc.aio.server(options=(*GRPC_SERVER_OPTIONS, ("grpc.max_receive_message_length", limit)))
            pb_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
            server.add_generic_rpc_handlers((health_handler(lambda: not self._stop.is_set()),))
            self.grpc_port = server.add_insecure_port(f"{host}:{self.config.listen.grpc_port}")
            await server.start()
            self._grpc = server
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._http_host, self.config.listen.http_port, reuse_port=False)
        await site.start()
        self._http = runner
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._tasks = [
            asyncio.create_task(self.discovery.run(self._stop), name="discovery"),
            asyncio.create_task(self.scraper.run(self._stop), name="scraper"),
            asyncio.create_task(self._reload_users(), name="users"),
        ]
        if self.sync is not None:
            self._tasks.append(asyncio.create_task(self.sync.run(self._stop), name="routing-sync"))

    def _load_routes(self, path: str) -> None:
        stamp = file_stamp(path)
        routes = load_routes(path, {m.name for m in self.config.models})
        self.core.routes.replace(routes)
        self._routes_stamp = stamp

    def _reload_routes(self) -> None:
        """Re-read the routes file if it changed; a broken one keeps the routes in force."""
        path = self.config.routes_file
        if path is None:
            return
        try:
            if file_stamp(path) == self._routes_stamp:
                return
            self._load_routes(path)
            self.routes_error = None
            log.info("routes reloaded from %s: %s", path, ", ".join(self.core.routes.names()) or "none")
        except (OSError, RoutesFileError) as exc:
            if str(exc) != self.routes_error:
                log.warning("routes file not reloaded, the previous routes stay in force: %s", exc)
            self.routes_error = str(exc)

    async def _reload_users(self) -> None:
        # Users and routes files are re-read when their stamps move (a stat per second each).
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), 1.0)
            except TimeoutError:
                self.users.reload_if_changed()
                self._reload_routes()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("background task %s failed", task.get_name())
        await self.discovery.close()
        await self.scraper.close()
        await self.pd.close()
        for subscriber in self.kv_events.values():
            await subscriber.close()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self._http is not None:
            await self._http.cleanup()
        await self.limiter.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)  # flushes the last batch

    def ready_line(self) -> str:
        return json.dumps({"event": "ready", "grpcPort": self.grpc_port, "httpPort": self.http_port})
