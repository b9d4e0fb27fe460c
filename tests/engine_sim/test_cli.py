"""aibrix-engine-sim: prints machine-readable endpoints, writes the endpoints file, and
refuses bad arguments with one clear line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from runtime_components.engine_sim.cli import main


def test_cli_starts_engines_and_reports_endpoints(tmp_path: Path) -> None:
    endpoints_file = tmp_path / "endpoints.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "3", "--base-port", "0",
         "--duration", "20", "--endpoints-file", str(endpoints_file), "--adapters", "sql"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[-1].strip() == "READY", lines
        printed = [json.loads(line) for line in lines[:3]]
        assert [e["index"] for e in printed] == [0, 1, 2]
        assert json.loads(endpoints_file.read_text()) == printed
        with urllib.request.urlopen(printed[2]["url"] + "/v1/models", timeout=5) as resp:
            ids = [m["id"] for m in json.load(resp)["data"]]
        assert ids == ["llama-3-8b", "sql"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reaps the process and closes its pipes
    assert proc.returncode == 0


def test_kv_events_ports_are_reported_and_the_gateway_reads_them(tmp_path: Path) -> None:
    from runtime_components.gateway.discovery.static import load_endpoints_file

    endpoints_file = tmp_path / "endpoints.json"
    config = '{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://127.0.0.1:0"}'
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "2", "--duration", "20",
         "--endpoints-file", str(endpoints_file), "--kv-events-config", config],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[-1].strip() == "READY", lines
        ports = [json.loads(line)["kv_events_port"] for line in lines[:2]]
        assert len(set(ports)) == 2 and all(p > 0 for p in ports)
        assert [e.kv_events_port for e in load_endpoints_file(str(endpoints_file), {"llama-3-8b"})] == ports
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "0"], "--engines must be >= 1, got 0"),
        (["--accelerator", "tpu"], "unknown accelerator 'tpu'; expected one of"),
        (["--model", "llama-3-70b", "--accelerator", "nvidia-l4"], "does not fit on 1 x nvidia-l4"),
        (["--fault", "9:slowdown=2"], "names engine 9, but engines are 0..0"),
        (["--fault", "0:error_rate=3"], "error_rate must be in [0, 1]"),
        (["--speedup", "0"], "--speedup must be > 0"),
        (["--pd-role", "decode", "--pd-link-gbs", "0"], "--pd-link-gbs must be > 0"),
        (["--adapters", "a,b,c", "--max-loras", "2"], "more adapters than --max-loras 2"),
        (["--kv-events-config", "{nope"], "--kv-events-config: not JSON"),
        (["--kv-events-config", '{"enable_kv_cache_events": true, "publisher": "kafka"}'], 'publisher must be "zmq"'),
    ],
)
def test_bad_arguments_exit_2_with_one_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
