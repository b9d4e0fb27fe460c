"""Start and stop a real vLLM OpenAI server (CPU build) for tests.

Every cache and temp directory vLLM, torch and Hugging Face would write to is pointed
inside the test's own directory, the model is local and Hugging Face is offline, and the
server runs in its own process group so stopping it ends all of vLLM's processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["VllmServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class VllmServer:
    python: str
    model_dir: Path
    work_dir: Path
    served_name: str = "tiny"
    max_loras: int = 2
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 240.0) -> VllmServer:
        self.port = self.port or free_port()
        for sub in ("cache", "tmp", "home"):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HOME=str(self.work_dir / "home"),
            HF_HOME=str(self.work_dir / "cache" / "hf"),
            VLLM_CACHE_ROOT=str(self.work_dir / "cache" / "vllm"),
            TORCHINDUCTOR_CACHE_DIR=str(self.work_dir / "cache" / "inductor"),
            TRITON_CACHE_DIR=str(self.work_dir / "cache" / "triton"),
            TMPDIR=str(self.work_dir / "tmp"),
            VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
            VLLM_CPU_KVCACHE_SPACE="1",
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
        )
        env.update(self.extra_env)
        cmd = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--enable-prefix-caching", "--enable-lora", "--max-lora-rank", "8",
            "--max-loras", str(self.max_loras), "--max-model-len", "512",
            *self.extra_args,
        ]  # fmt: skip
        self._log = open(self.work_dir / "vllm.log", "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"vLLM was not healthy within {timeout_s:.0f}s; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int | None = 30) -> str:
        """The last ``lines`` lines of the server's log (None: all of it)."""
        try:
            return "\n".join((self.work_dir / "vllm.log").read_text(errors="replace").splitlines()[-lines if lines else 0:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        try:
            self._terminate()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
