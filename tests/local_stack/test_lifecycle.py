"""`aibrix-local up` stops every component on Ctrl-C or SIGTERM, frees its ports, and a
killed runner takes its components with it (parent-death signal)."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from local_stack.ports import port_busy

from .harness import REPO, processes_naming, start_up

pytestmark = pytest.mark.slow
QUICKSTART = str(REPO / "examples" / "stacks" / "quickstart.yaml")


def _ready_line(proc: subprocess.Popen[str], timeout_s: float = 90) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("ready in "):
                return line
            if not line:
                break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"no ready line; stderr: {err}")


def _wait_gone(folder: Path, timeout_s: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (left := processes_naming(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _ports(folder: Path, line: str) -> list[int]:
    gateway = next(json.loads(x) for x in (folder / "gateway.log").read_text().splitlines() if x.startswith('{"event"'))
    envoy = int(re.search(r"127\.0\.0\.1:(\d+)/v1", line).group(1))  # type: ignore[union-attr]
    engines = [int(e["port"]) for f in folder.glob("engine-*.endpoints.json") for e in json.loads(f.read_text())]
    return [envoy, gateway["grpcPort"], gateway["httpPort"], *engines]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_signal_stops_every_component_and_frees_its_ports(sig: signal.Signals, tmp_path: Path) -> None:
    proc = start_up(QUICKSTART, "--port", "0", "--log-dir", str(tmp_path))
    line = _ready_line(proc)
    url = re.search(r"OpenAI base URL (\S+?);", line).group(1)  # type: ignore[union-attr]
    request = urllib.request.Request(f"{url}/completions", headers={"content-type": "application/json"},
                                     data=json.dumps({"model": "Qwen/Qwen2.5-0.5B-Instruct", "prompt": "Hi",
                                                      "max_tokens": 4}).encode())
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.load(resp)["choices"][0]["text"]
    running = processes_naming(tmp_path)
    assert len(running) >= 3, running  # engines, gateway, envoy
    ports = _ports(tmp_path, line)
    assert all(port_busy(p) for p in ports)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped: every component exited" in err
    assert processes_naming(tmp_path) == []
    assert [p for p in ports if port_busy(p)] == []


def test_a_killed_runner_leaves_no_component_behind(tmp_path: Path) -> None:
    proc = start_up(QUICKSTART, "--port", "0", "--log-dir", str(tmp_path))
    _ready_line(proc)
    assert processes_naming(tmp_path)
    proc.kill()  # no chance to clean up: the children's parent-death signal must do it
    proc.communicate(timeout=30)
    assert _wait_gone(tmp_path) == []
