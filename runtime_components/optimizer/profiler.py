"""Measured profiles: drive any OpenAI-compatible endpoint over the bucket grid.

For each (input bucket, output bucket) cell the profiler runs a ``RateSearch``, as the
roofline deriver does. Each probe sends streaming ``/v1/completions`` requests with seeded
Poisson arrivals at the probed rate: the prompt is a list of exactly the cell's
representative length (``profiles.representative_tokens``: by default the geometric middle
of the bucket's range) in random token ids (ids 100..999, valid in any vocabulary; random, so no
prefix-cache hits), ``max_tokens`` is the output length, with ``ignore_eos`` and
``min_tokens`` (vLLM's extensions) so every request generates the whole output. A probe
sends ``search.probe_requests`` requests (enough to span several lone-request latencies,
at least ``requests_per_probe``) and passes when, over the requests after the first
``WARMUP_FRACTION``, p99 TTFT and p99 TPOT (``(t_last - t_first) / (tokens - 1)``) meet
the SLO and no request failed (``search.slo_met``).

``speedup``: a simulated engine run k times faster than real time (``aibrix-engine-sim
--speedup k``) answers in 1/k of the model's latency; the profiler sends k times the probed
rate and multiplies the latencies it measures by k, so the profile is in the model's time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from aiohttp import ClientError, ClientSession, ClientTimeout

from aibrix_spec.catalog import ACCELERATORS
from aibrix_spec.components.optimizer import GpuProfile, SloTargets
from runtime_components.optimizer.errors import OptimizerError
from runtime_components.optimizer.profiles import representative_tokens, save_profile
from runtime_components.optimizer.search import (
    WARMUP_FRACTION,
    ProbeStats,
    RateSearch,
    arrival_offsets,
    probe_requests,
    slo_met,
)

__all__ = [
    "EndpointProfiler",
    "prompt_of",
    "profile_endpoint",
    "check_endpoint",
    "run_profile_command",
    "slo_from_args",
]

MAX_REQUESTS_PER_PROBE = 1000


def prompt_of(tokens: int, rng: random.Random) -> list[int]:
    """A prompt of exactly ``tokens`` random token ids (no two requests share a prefix)."""
    return [rng.randrange(100, 1000) for _ in range(tokens)]


class EndpointProfiler:
    def __init__(self, session: ClientSession, url: str, model: str, *, slo: SloTargets,
                 requests_per_probe: int, speedup: float, rng: random.Random, arrival_seed: int = 0) -> None:
        self.session = session
        self.url = url.rstrip("/") + "/v1/completions"
        self.model = model
        self.slo = slo
        self.requests_per_probe = requests_per_probe
        self.speedup = speedup
        self.rng = rng  # prompts
        self.arrival_seed = arrival_seed  # arrivals: the same pattern as the deriver's for one seed

    async def _one(self, input_tokens: int, output_tokens: int) -> tuple[float, float] | str:
        """(TTFT, TPOT) in model seconds, or an error string."""
        body = {"model": self.model, "prompt": prompt_of(input_tokens, self.rng), "max_tokens": output_tokens,
                "min_tokens": output_tokens, "ignore_eos": True, "temperature": 0.0, "stream": True,
                "stream_options": {"include_usage": True}}
        sent = time.perf_counter()
        first = last = None
        chunks = 0
        usage_tokens = None
        try:
            async with self.session.post(self.url, json=body) as response:
                if response.status != 200:
                    return f"HTTP {response.status}: {(await response.text())[:200]}"
                async for raw in response.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[5:])
                    if event.get("usage"):
                        usage_tokens = event["usage"].get("completion_tokens")
                    if any(choice.get("text") for choice in event.get("choices") or []):
                        last = time.perf_counter()
                        first = first or last
                        chunks += 1
        except (TimeoutError, OSError, ClientError, json.JSONDecodeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if first is None or last is None:
            return "the stream carried no tokens"
        tokens = usage_tokens or chunks
        tpot = (last - first) / (tokens - 1) if tokens > 1 else 0.0
        return (first - sent) * self.speedup, tpot * self.speedup

    async def probe(self, input_tokens: int, output_tokens: int, rate: float, requests: int) -> ProbeStats:
        """Open-loop Poisson arrivals at ``rate`` (model time) for ``requests`` requests."""
        offsets = [at / self.speedup for at in arrival_offsets(rate, requests, self.arrival_seed)]
        begin = time.perf_counter()

        async def delayed(offset: float) -> tuple[float, float] | str:
            await asyncio.sleep(max(0.0, begin + offset - time.perf_counter()))
            return await self._one(input_tokens, output_tokens)

        results = await asyncio.gather(*(delayed(o) for o in offsets))
        skip = int(len(results) * WARMUP_FRACTION)
        stats = ProbeStats(rate)
        for result in results[skip:]:
            if isinstance(result, str):
                stats.errors.append(result)
            else:
                stats.ttft_s.append(result[0])
                stats.tpot_s.append(result[1])
        return stats

    async def max_rate(self, input_tokens: int, output_tokens: int, *, rel_tol: float = 0.1,
                       max_probes: int = 12, start: float | None = None) -> RateSearch:
        """The cell's max rate; ``start`` (e.g. a derived profile's rate) saves probes."""
        # One request on an idle endpoint: if even that misses the SLO (or fails), the cell is
        # unservable; otherwise start near one replica's isolated throughput 1 / e2e latency.
        single = await self._one(input_tokens, output_tokens)
        idle = ProbeStats(0.0, [single[0]], [single[1]]) if not isinstance(single, str) else None
        if idle is None or not slo_met(idle, self.slo):
            return RateSearch(start=1.0, max_probes=0)
        if start is None:
            start = 1.0 / max(single[0] + output_tokens * single[1], 1e-3)
        # Few halvings: a probe at rate r lasts requests_per_probe / r, so very low rates are slow.
        search = RateSearch(start=start, rel_tol=rel_tol, max_probes=max_probes, max_halvings=4)
        lone_e2e = single[0] + (output_tokens - 1) * single[1]
        while (rate := search.next_rate()) is not None:
            n = probe_requests(rate, lone_e2e, minimum=self.requests_per_probe, maximum=MAX_REQUESTS_PER_PROBE)
            search.record(rate, slo_met(await self.probe(input_tokens, output_tokens, rate, n), self.slo))
        return search


async def profile_endpoint(url: str, model: str, accelerator: str, *, slo: SloTargets, input_buckets: list[int],
                           output_buckets: list[int], requests_per_probe: int = 60, speedup: float = 1.0,
                           gpus_per_replica: int = 1, seed: int = 0, rel_tol: float = 0.1,
                           max_probes: int = 12, request_tokens: str = "geometric") -> GpuProfile:
    """Measure every cell and return a ``measured`` profile."""
    rng = random.Random(seed)
    async with ClientSession(timeout=ClientTimeout(total=600)) as session:
        await check_endpoint(session, url, model)
        profiler = EndpointProfiler(session, url, model, slo=slo, requests_per_probe=requests_per_probe,
                                    speedup=speedup, rng=rng, arrival_seed=seed)
        rows = []
        for a in range(len(input_buckets)):
            row = []
            for b in range(len(output_buckets)):
                i = representative_tokens(input_buckets, a, request_tokens)
                o = representative_tokens(output_buckets, b, request_tokens)
                search = await profiler.max_rate(i, o, rel_tol=rel_tol, max_probes=max_probes)
                row.append(round(search.max_rate, 6))
            rows.append(row)
    return GpuProfile(model=model, accelerator=accelerator, gpus_per_replica=gpus_per_replica, slo=slo,
                      method="measured", request_tokens=request_tokens,  # type: ignore[arg-type]
                      input_buckets=input_buckets, output_buckets=output_buckets, max_rps=rows)


async def check_endpoint(session: ClientSession, url: str, model: str) -> None:
    """Fail early, with a message, when the endpoint is down or does not serve ``model``
    (otherwise every cell would silently measure 0)."""
    models_url = url.rstrip("/") + "/v1/models"
    try:
        async with session.get(models_url, timeout=ClientTimeout(total=30)) as response:
            if response.status != 200:
                raise OptimizerError(f"{models_url} answered HTTP {response.status}; expected the model list")
            served = [m.get("id") for m in (await response.json()).get("data", [])]
    except (TimeoutError, OSError, ClientError) as exc:
        raise OptimizerError(
            f"cannot reach {models_url}: {exc}\n  hint: start the engine first, and check --url") from None
    except json.JSONDecodeError:
        raise OptimizerError(f"{models_url} did not answer JSON; is --url an OpenAI-compatible server?") from None
    if model not in served:
        raise OptimizerError(f"the endpoint does not serve model {model!r}; it serves: {', '.join(map(str, served))}")


def slo_from_args(args: argparse.Namespace) -> SloTargets:
    if args.ttft_p99_ms is None and args.tpot_p99_ms is None:
        raise OptimizerError("an SLO is needed: pass --ttft-p99-ms and/or --tpot-p99-ms")
    return SloTargets(ttft_p99_ms=args.ttft_p99_ms, tpot_p99_ms=args.tpot_p99_ms)


def check_accelerator(name: str) -> None:
    if name not in ACCELERATORS:
        raise OptimizerError(f"unknown accelerator {name!r}; known: {', '.join(sorted(ACCELERATORS))}")


def run_profile_command(args: argparse.Namespace) -> int:
    slo = slo_from_args(args)
    check_accelerator(args.accelerator)
    if args.requests_per_probe < 10:
        raise OptimizerError(f"--requests-per-probe {args.requests_per_probe} is too few for a p99; use >= 10")
    profile = asyncio.run(profile_endpoint(
        args.url, args.model, args.accelerator, slo=slo, input_buckets=args.input_buckets,
        output_buckets=args.output_buckets, requests_per_probe=args.requests_per_probe,
        speedup=args.speedup, gpus_per_replica=args.gpus_per_replica, seed=args.seed,
        request_tokens=args.request_tokens or "geometric"))
    save_profile(profile, args.output)
    print(f"wrote {args.output}: {len(args.input_buckets)} x {len(args.output_buckets)} cells")
    return 0
