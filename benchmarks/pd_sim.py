"""Building blocks of ``benchmarks.pd``: workloads, fleets and routers over engine_sim's DES.

A fleet is a list of engine configs with roles on a fixed number of GPUs. Routers see what a
gateway sees: each engine's running and waiting counts plus what the router itself has sent
that has not reached the engine yet (``num_arriving``: the API path, a KV transfer).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from aibrix_spec.catalog import replica_bandwidth_gbs
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, RequestRecord, RouteFn, RunWhole, Simulation, summarize
from runtime_components.engine_sim.pd import DEFAULT_LINK_GBS, PdRole

__all__ = [
    "Fleet",
    "Stats",
    "aggregated",
    "disaggregated",
    "least_request",
    "make_requests",
    "run",
    "saturation_capacity",
    "short_on_prefill_default",
    "stats",
]


@dataclass(frozen=True)
class Fleet:
    """Engines and their roles; ``gpus`` counts tensor-parallel ranks."""

    name: str
    configs: tuple[EngineConfig, ...]
    roles: tuple[PdRole, ...]
    min_prompt_tokens: int = 0  #: P/D: shorter prompts skip the prefill engines

    @property
    def gpus(self) -> int:
        return sum(c.tensor_parallel for c in self.configs)

    @property
    def split(self) -> str:
        """``"3P:5D"`` in GPUs (``"aggregated"`` without roles)."""
        if all(r == "both" for r in self.roles):
            return "aggregated"
        p = sum(c.tensor_parallel for c, r in zip(self.configs, self.roles, strict=True) if r == "prefill")
        return f"{p}P:{self.gpus - p}D"


def _roles(role: PdRole, n: int) -> tuple[PdRole, ...]:
    return tuple(role for _ in range(n))


def aggregated(base: EngineConfig, gpus: int, *, max_num_batched_tokens: int) -> Fleet:
    n = gpus // base.tensor_parallel
    cfg = replace(base, max_num_batched_tokens=max_num_batched_tokens)
    return Fleet(f"aggregated (budget {max_num_batched_tokens})", (cfg,) * n, _roles("both", n))


def disaggregated(prefill: EngineConfig, n_prefill: int, decode: EngineConfig, n_decode: int,
                  min_prompt_tokens: int) -> Fleet:  # fmt: skip
    p = n_prefill * prefill.tensor_parallel
    d = n_decode * decode.tensor_parallel
    roles = _roles("prefill", n_prefill) + _roles("decode", n_decode)
    return Fleet(f"disaggregated {p}P:{d}D", (prefill,) * n_prefill + (decode,) * n_decode, roles, min_prompt_tokens)


def _load(e: EngineView) -> tuple[int, float]:
    return e.num_running + e.num_waiting + e.num_arriving, e.kv_cache_usage


def least_request(req: SimRequest, engines: Sequence[EngineView]) -> int:
    """Fewest requests in flight (running, waiting, on their way), then the emptier KV cache."""
    return min(range(len(engines)), key=lambda i: _load(engines[i]))


def _pd_route(min_prompt_tokens: int, short_on_prefill: bool = True) -> RouteFn:
    def route(req: SimRequest, engines: Sequence[EngineView]) -> int:
        # long prompts to the least-loaded prefill engine (none ready: decode in place); short
        # ones to the least-loaded decode engine, or, as the gateway's shortPromptsOnPrefillPods
        # does (pd.PrefillDecode.short_pool), while no prefill leg is in flight, whole on a
        # prefill engine less loaded than every decode one
        prefill = [i for i, e in enumerate(engines) if e.role == "prefill"]
        decode = [i for i, e in enumerate(engines) if e.role != "prefill"]
        if len(req.prompt_token_ids) >= min_prompt_tokens and prefill:
            return min(prefill, key=lambda i: _load(engines[i]))
        if short_on_prefill and prefill and not any(engines[i].num_prefill_legs for i in prefill):
            bound = min((_load(engines[i])[0] for i in decode), default=math.inf)
            spare = [i for i in prefill if _load(engines[i])[0] < bound]
            if spare:
                best = min(spare, key=lambda i: _load(engines[i]))
                return RunWhole(best)  # the whole request on the prefill engine, no transfer
        return min(decode, key=lambda i: _load(engines[i]))

    return route


def short_on_prefill_default(fleet: Fleet) -> bool:
    """The compiler's default for ``shortPromptsOnPrefillPods``
    (``compiler.plan.disaggregation.short_on_prefill_default``): on only where every prefill
    engine decodes at least as fast as every decode engine (GPU bandwidth times TP)."""
    pairs = list(zip(fleet.configs, fleet.roles, strict=True))
    prefill = [replica_bandwidth_gbs(c.accelerator, c.tensor_parallel) for c, r in pairs if r == "prefill"]
    decode = [replica_bandwidth_gbs(c.accelerator, c.tensor_parallel) for c, r in pairs if r != "prefill"]
    return bool(prefill and decode) and min(prefill) >= max(decode)


def run(fleet: Fleet, requests: Sequence[SimRequest], link_gbs: float = DEFAULT_LINK_GBS, *,
        short_on_prefill: bool | None = None) -> list[RequestRecord]:
    """``short_on_prefill``: whether short prompts may run on a less-loaded prefill engine;
    None takes the compiled default for this fleet (``short_on_prefill_default``)."""
    pd = any(r == "prefill" for r in fleet.roles)
    spill = short_on_prefill_default(fleet) if short_on_prefill is None else short_on_prefill
    sim = Simulation(
        fleet.configs,
        _pd_route(fleet.min_prompt_tokens, spill) if pd else least_request,
        roles=fleet.roles,
        decode_route=least_request if pd else None,
        link_gbs=link_gbs,
        record_token_times=True,
    )
    return sim.run(requests)


def make_requests(
    rng: random.Random, rate: float, n: int, prompt: tuple[int, int], output: tuple[int, int], prefix: str
) -> list[SimRequest]:
    """``n`` Poisson arrivals at ``rate``/s, prompt and output lengths uniform in the ranges,
    unique token ids (no prefix sharing: the comparison is not about caching)."""
    out, t = [], 0.0
    for i in range(n):
        t += rng.expovariate(rate) if math.isfinite(rate) else 0.0
        tokens = [rng.randrange(128000) for _ in range(rng.randint(*prompt))]
        out.append(SimRequest(f"{prefix}{i}", tokens, rng.randint(*output), t))
    return out


def saturation_capacity(fleet: Fleet, requests: Sequence[SimRequest], link_gbs: float = DEFAULT_LINK_GBS) -> float:
    """Completed requests per second when ``requests`` all arrive at once (the fleet's throughput
    bound for this request mix)."""
    burst = [SimRequest(r.request_id, r.prompt_token_ids, r.max_tokens, 0.0) for r in requests]
    s = summarize(run(fleet, burst, link_gbs))
    return s.completed / s.duration_s


@dataclass(frozen=True)
class Stats:
    """One row of the table."""

    label: str
    split: str
    requests: int
    errors: int
    ttft_mean: float
    ttft_p95: float
    itl_mean: float
    itl_p50: float
    itl_p95: float
    e2e_mean: float
    e2e_p95: float
    req_per_s: float
    tok_per_s: float
    ttfts: tuple[float, ...]
    itls: tuple[float, ...]


def stats(label: str, fleet: Fleet, records: Sequence[RequestRecord]) -> Stats:
    s = summarize(records)
    done = [r for r in records if r.error is None and r.finish_s is not None]
    return Stats(
        label, fleet.split, s.requests, s.errors, s.ttft.mean, s.ttft.p95, s.itl.mean, s.itl.p50, s.itl.p95,
        s.e2e.mean, s.e2e.p95, s.req_per_s, s.output_tok_per_s,
        tuple(r.ttft_s for r in done if r.ttft_s is not None), tuple(g for r in done for g in r.itl_s),
    )  # fmt: skip
