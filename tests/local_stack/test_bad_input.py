"""Bad input to `aibrix-local`: one clear line (the compiler's diagnostics for an invalid
stack), the right exit status, and nothing left running."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from .harness import REPO, local_cli, processes_naming

QUICKSTART = REPO / "examples" / "stacks" / "quickstart.yaml"


def test_an_invalid_stack_fails_with_the_compilers_errors(tmp_path: Path) -> None:
    stack = tmp_path / "bad.yaml"
    stack.write_text(QUICKSTART.read_text().replace("maxModelLen: 4096", "maxModelLen: 4096\n        replica: 2"))
    result = local_cli("up", str(stack), "--log-dir", str(tmp_path / "logs"))
    assert result.returncode == 1
    assert f"error: {stack}:" in result.stderr
    assert 'unknown field "replica"' in result.stderr or "unknown field `replica`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()


def test_a_missing_stack_file_is_one_line(tmp_path: Path) -> None:
    result = local_cli("smoke", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot read {tmp_path / 'nope.yaml'}: no such file; expected the path of an InferenceStack YAML file"]


def test_a_busy_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = local_cli("up", str(QUICKSTART), "--port", str(port), "--log-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is busy; expected a free port for the OpenAI endpoint; "
        "hint: --port 0 picks a free one")
    assert list(tmp_path.glob("*.log")) == []


def test_a_missing_envoy_binary_is_one_line(tmp_path: Path) -> None:
    result = local_cli("up", str(QUICKSTART), "--port", "0", "--log-dir", str(tmp_path),
                       env={"AIBRIX_ENVOY": str(tmp_path / "envoy")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: AIBRIX_ENVOY={tmp_path / 'envoy'} is not an executable file; expected the path of an envoy binary")
    assert list(tmp_path.glob("*.log")) == []


@pytest.mark.slow
def test_a_component_that_fails_to_start_stops_everything_already_started(tmp_path: Path) -> None:
    broken = tmp_path / "envoy"
    broken.write_text("#!/bin/sh\necho 'envoy: cannot load the bootstrap' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    logs = tmp_path / "logs"
    result = local_cli("up", str(QUICKSTART), "--port", "0", "--log-dir", str(logs), env={"AIBRIX_ENVOY": str(broken)})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: envoy exited with status 3 while starting: envoy: cannot load the bootstrap")
    assert f"(log: {logs / 'envoy.log'})" in last
    assert (logs / "gateway.log").exists()  # the gateway and engines had started, and were stopped
    assert processes_naming(logs) == []
    assert os.path.exists(logs / "envoy.log")


@pytest.mark.parametrize(("args", "message"), [
    (["--model-dir", "nope"], "error: --model-dir nope: expected NAME=PATH, e.g. --model-dir qwen2-5-0-5b=./models/qwen"),
    (["--model-dir", "qwen2-5-0-5b=/no/such/folder"],
     "error: --model-dir qwen2-5-0-5b=/no/such/folder: /no/such/folder is not a folder; expected a folder with the "
     "model's config.json, tokenizer and weights"),
    (["--model-dir", "llama={tmp}"], 'error: --model-dir llama={tmp}: no model "llama" in the stack; expected one of qwen2-5-0-5b'),
    (["--engines", "vllm-cpu"], "error: --engines vllm-cpu: no --model-dir for Qwen/Qwen2.5-0.5B-Instruct; expected "
                                "NAME=PATH for every model (or --engines sim to simulate the others)"),
    (["--model-dir", "qwen2-5-0-5b={tmp}", "--vllm-python", "/bin/false"],  # an interpreter that imports nothing
     "error: /bin/false cannot import vllm; expected the interpreter of an environment with vLLM's CPU build: "
     "pass --vllm-python PATH (scripts/test-real-engine builds one in .venv-real-engine)"),
], ids=["not-name-equals-path", "not-a-folder", "unknown-model", "vllm-cpu-without-dirs", "no-vllm"])
def test_bad_real_engine_options_are_one_line_and_start_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    logs = tmp_path / "logs"
    result = local_cli("up", str(QUICKSTART), "--port", "0", "--log-dir", str(logs), *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == message.replace("{tmp}", str(tmp_path))
    assert processes_naming(logs) == []
    assert list(logs.glob("*.log")) == []
