"""`aibrix-kv-server`: clear errors for bad input, and a real process that drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from runtime_components.kv.cli import main


@pytest.mark.parametrize(
    ("yaml_text", "args", "want"),
    [
        (None, ["--config", "{dir}/missing.yaml"], "error: {dir}/missing.yaml\n  cannot read the file: No such file or directory\n  hint: pass the file"),
        ("server: [1, 2", ["--config", "{dir}/c.yaml"], "error: {dir}/c.yaml:1:"),
        ("server:\n  capacty: 1Gi\n", ["--config", "{dir}/c.yaml"], "error: {dir}/c.yaml:2:3: server.capacty\n  unknown field `capacty`\n"
         "      2 |   capacty: 1Gi\n        |   ^\n  hint: did you mean `capacity`?"),
        ("server:\n  eviction: {policy: arc}\n", ["--config", "{dir}/c.yaml"],
         "error: {dir}/c.yaml:2:22: server.eviction.policy\n  `arc` is not allowed here\n"
         "      2 |   eviction: {{policy: arc}}\n        |                      ^\n  hint: expected one of: 'adaptive', 's3fifo', 'lru' or 'fifo'"),
        ("client:\n  members: {source: static, static: ['10.0.0.1:9600']}\n", ["--config", "{dir}/c.yaml"],
         "error: {dir}/c.yaml: no `server:` block"),
        ("- 1\n", ["--config", "{dir}/c.yaml"], "error: {dir}/c.yaml:1:1\n  expected a mapping of KVPoolConfig fields at the top\n"
         "      1 | - 1\n        | ^\n  hint: a KVPoolConfig has `server:` and/or `client:` at the top"),
        ("server:\n  capacity: 2x\n", ["--config", "{dir}/c.yaml"],
         "error: {dir}/c.yaml:2:13: server.capacity\n  expected a byte count or a quantity like '512Mi', '64Gi', '4M', "
         "got '2x'\n      2 |   capacity: 2x\n        |             ^\n  hint: sizes take bytes or quantities like 512Mi"),
        (None, ["--capacity", "2x"], "server.capacity: expected a byte count or a quantity like '512Mi', '64Gi', '4M', got '2x'"),
        (None, ["--capacity", "1Ki", "--page-size", "4Ki"], "capacity (1024 bytes) must hold at least one page (4096 bytes)"),
    ],
)
def test_bad_input_is_one_clear_message_and_exit_2(tmp_path, capsys, yaml_text, args, want):
    if yaml_text is not None:
        (tmp_path / "c.yaml").write_text(yaml_text)
    assert main([a.format(dir=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert want.format(dir=tmp_path) in err and "Traceback" not in err


def test_server_process_serves_then_drains_on_sigterm(tmp_path):
    config = tmp_path / "pool.yaml"
    config.write_text(f"server:\n  host: 127.0.0.1\n  port: 0\n  metricsPort: 0\n  capacity: 8Mi\n"
                      f"  shm: {{dir: {tmp_path}}}\n  drainSeconds: 1\n")
    with subprocess.Popen([sys.executable, "-m", "runtime_components.kv.cli", "--config", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:  # closes its pipes
        try:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line.startswith("aibrix-kv-server listening port="), line + proc.stderr.read()  # type: ignore[union-attr]
            assert any(name.startswith("aibrix-kv-") for name in os.listdir(tmp_path))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            assert not [n for n in os.listdir(tmp_path) if n.startswith("aibrix-kv-")]  # heap file unlinked
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
