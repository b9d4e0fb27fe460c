"""The ports a running Envoy bound, asked of Envoy itself.

Where it sits: whatever starts Envoy with its listener and admin on port 0 (the runner of
``aibrix-local``, the gateway's integration-test harness) finds the ports here instead of
picking free ones beforehand, which another process could take before Envoy binds them.
Envoy is started with ``--admin-address-path FILE``: it writes its admin address
(``127.0.0.1:PORT``) there once the admin API listens, and the admin API's
``GET /listeners?format=json`` names each listener's bound ``local_address``.

Standard library only; no process handling (the caller owns the process).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EnvoyPorts", "envoy_ports", "wait_envoy_ports"]


@dataclass(frozen=True)
class EnvoyPorts:
    admin: str  #: the admin API's ``host:port``
    listener: int  #: the port the (first) listener bound

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin}"


def envoy_ports(admin_address_path: Path, timeout_s: float = 2.0) -> EnvoyPorts | None:
    """One look: the admin address from ``admin_address_path`` and the first listener's bound
    port from the admin API; None while Envoy has not written the file, does not answer yet or
    has not bound a listener."""
    try:
        admin = admin_address_path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not admin:
        return None
    try:
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=timeout_s) as resp:
            statuses = json.load(resp)["listener_statuses"]
        port = int(statuses[0]["local_address"]["socket_address"]["port_value"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return EnvoyPorts(admin, port) if port else None


def wait_envoy_ports(admin_address_path: Path, *, running: Callable[[], bool], timeout_s: float = 30.0,
                     interval_s: float = 0.1) -> EnvoyPorts | None:
    """Poll :func:`envoy_ports` until it answers, ``running()`` turns false (Envoy exited) or
    ``timeout_s`` passes; None for the last two."""
    deadline = time.monotonic() + timeout_s
    while running():
        found = envoy_ports(admin_address_path)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            return None
        time.sleep(interval_s)
    return None
