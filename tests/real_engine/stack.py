"""Real vLLM servers behind the real gateway and real Envoy: the pieces the real-engine tests
and ``benchmarks/real_engine.py`` share.

``GatewayStack`` writes a static endpoints file naming the given vLLM servers, starts the
gateway CLI (``tests/gateway/harness.GatewayProcess``) and Envoy with the compiled bootstrap
(``EnvoyProcess``: ``compiler/render/envoy_bootstrap``), and waits until the gateway has
scraped every engine twice. Requests go to Envoy's listener, so every byte takes the
production path client -> Envoy -> ext_proc (gateway) -> ORIGINAL_DST -> vLLM.

``engine_counters`` reads a vLLM server's Prometheus text and sums every sample of each
family (vLLM labels them ``{engine, model_name}``; requests to an adapter count under the
base model), which is what the tests compare before and after a workload.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.gateway.harness import EnvoyProcess, GatewayProcess, envoy_binary, wait_for

__all__ = ["GatewayStack", "engine_counters", "envoy_binary", "http_json", "PREFIX_COUNTERS"]

#: The vLLM 0.32 counters (token units) the prefix-cache tests and the benchmark read.
PREFIX_COUNTERS = (
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:external_prefix_cache_queries_total",
    "vllm:external_prefix_cache_hits_total",
    "vllm:prompt_tokens_total",
    "vllm:request_success_total",
)


def http_json(url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
              timeout_s: float = 120.0) -> tuple[int, Any]:
    """POST ``body`` (or GET when None) and return (status, decoded JSON or raw text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def engine_counters(url: str, names: tuple[str, ...] = PREFIX_COUNTERS) -> dict[str, float]:
    """Sum of all samples of each metric in ``names`` on a vLLM server's ``/metrics``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    totals = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


class GatewayStack:
    """One gateway (subprocess) and one Envoy in front of ``engines`` (``{pod name: ip:port}``).

    ``routing`` is the model's routing block (camelCase, as in the gateway config); header
    override is on, so a request may pick another policy with ``x-routing-policy``.
    ``endpoint_fields`` adds keys to a pod's static endpoint entry (e.g. ``{"role": "prefill"}``),
    ``model_fields`` to the model's entry (e.g. ``disaggregation``).
    """

    def __init__(self, workdir: Path, engines: dict[str, str], *, model: str = "tiny",
                 routing: dict[str, Any] | None = None, adapters: tuple[str, ...] = (),
                 endpoint_fields: dict[str, dict[str, Any]] | None = None,
                 model_fields: dict[str, Any] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.model = model
        endpoints = [{"address": address, "model": model, "pod": pod, **(endpoint_fields or {}).get(pod, {})}
                     for pod, address in engines.items()]
        (workdir / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}))
        config = {
            "discovery": {"mode": "static", "endpointsFile": str(workdir / "endpoints.yaml"), "pollIntervalS": 0.5},
            "models": [{"name": model, "adapters": list(adapters),
                        "routing": {"allowHeaderOverride": True, **(routing or {})}, **(model_fields or {})}],
            "scrape": {"intervalS": 0.3, "timeoutS": 2.0, "stalenessS": 5.0},
        }
        self._processes: list[Any] = []
        try:
            self.gateway = GatewayProcess(config, workdir)
            self._processes.append(self.gateway)
            # Prompts here are a few KiB: the bootstrap's default 1 MiB buffer is enough.
            self.envoy = EnvoyProcess(workdir, self.gateway.grpc_port)
            self._processes.append(self.envoy)
            if not wait_for(lambda: json.loads(self.gateway.get("/healthz"))["scrapeRounds"] >= 2, 30, 0.2):
                raise RuntimeError(f"the gateway never scraped the engines: {self.gateway.get('/healthz')}")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return self.envoy.url

    def complete(self, prompt: str, *, model: str | None = None, max_tokens: int = 4,
                 policy: str | None = None, stream: bool = False) -> tuple[int, Any, float]:
        """One /v1/completions through Envoy; returns (status, body, seconds to the first byte).

        With ``stream`` the first byte is the first SSE chunk, i.e. the time to first token.
        """
        headers = {"x-routing-policy": policy} if policy else {}
        body: dict[str, Any] = {"model": model or self.model, "prompt": prompt, "max_tokens": max_tokens,
                                "temperature": 0}
        if stream:
            body["stream"] = True
        req = urllib.request.Request(self.url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                first = resp.read(1) if stream else b""
                ttfb = time.perf_counter() - start
                raw = first + resp.read()
                status = resp.status
        except urllib.error.HTTPError as error:
            ttfb = time.perf_counter() - start
            status, raw = error.code, error.read()
        if stream:
            return status, raw.decode(errors="replace"), ttfb
        try:
            return status, json.loads(raw), ttfb
        except ValueError:
            return status, raw.decode(errors="replace"), ttfb

    def gateway_metrics(self) -> str:
        return self.gateway.get("/metrics")

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
