"""The same seeded trace, routed and scaled through vLLM's and SGLang's metric dialects.

    python -m benchmarks.metric_dialects --quick

One seeded trace (chat sessions sharing prefixes, a quiet-burst-quiet rate) is replayed on
``engine_sim``'s discrete-event engines (llama-3-8b on nvidia-a10) once per *variant*. Each
variant renders every engine's state as a Prometheus page in one dialect
(``engine_sim.metrics.render_metrics``, the text the simulated engine serves on ``/metrics``)
and reads it with the real readers: the gateway's (``scraper.parse_exposition`` ->
``sample_from_metrics`` -> ``EndpointTable`` -> the router built from the routing spec) and the
scaler's (``scrape.parse_pod_sample`` -> ``Autoscaler``, KPA on running + waiting requests,
engines added or drained as it decides, with seeded start-up delays). Variants:

- ``vllm``: vLLM pages, reader configured ``engine: vllm`` (the reference);
- ``sglang``: SGLang pages, reader configured ``engine: sglang``;
- ``sglang-detect``: SGLang pages, no engine configured (detected from the names' prefix);
- ``sglang-blind`` (baseline: the stack before the table): SGLang pages read as vLLM.

RESULT ``dialect_decisions_identical`` is true when the routing picks (request -> engine)
and the scaling decisions (time, replicas before, after) of ``sglang`` and
``sglang-detect`` equal ``vllm``'s, for every routing policy run. The blind baseline shows
what the table fixes: its picks and decisions differ, because it sees no metric at all.
Idealisations: no HTTP between reader and engine (the pages are the same bytes the HTTP
server sends; ``tests/gateway/test_metric_dialects.py`` scrapes live engines over HTTP);
the simulated SGLang pages carry SGLang's names and label sets but vLLM's counter timing
(see ``engine_sim/metrics.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aibrix_spec.components.scaler import ScalingTarget
from aibrix_spec.models import AUTOSCALING_METRICS
from aibrix_spec.routing import RoutingSpec
from benchmarks.workloads.arrivals import poisson
from benchmarks.workloads.generators import chat_sessions
from benchmarks.workloads.trace import to_sim_requests
from runtime_components.common.engine_metrics import Exposition
from runtime_components.engine_sim.config import EngineConfig, SimRequest
from runtime_components.engine_sim.des import EngineView, RequestRecord, Simulation
from runtime_components.engine_sim.metrics import render_metrics
from runtime_components.gateway.endpoints import DiscoveredEndpoint, EndpointTable
from runtime_components.gateway.policy import EndpointState, RequestOutcome, Router, RouteRequest, build_router
from runtime_components.gateway.scraper import parse_exposition, sample_from_metrics
from runtime_components.scaler.autoscaler import Autoscaler
from runtime_components.scaler.scrape import parse_pod_sample

MODEL = "llama-3-8b"
ENGINE = EngineConfig(accelerator="nvidia-a10", model_arch=MODEL)
#: variant -> (pages' dialect, the reader's configured engine; None = detect)
VARIANTS: dict[str, tuple[str, str | None]] = {
    "vllm": ("vllm", "vllm"),
    "sglang": ("sglang", "sglang"),
    "sglang-detect": ("sglang", None),
    "sglang-blind": ("sglang", "vllm"),
}
#: Reads every scraped value a scorer uses: running/waiting, KV usage, TTFT/TPOT, throughput.
QUICK_POLICIES = ("least-request,least-kv-cache,least-latency,throughput,prefix-cache-aware",)
FULL_POLICIES = QUICK_POLICIES + ("least-request", "least-kv-cache", "least-latency", "throughput",
                                  "prefix-cache-aware:2,least-request")  # fmt: skip
SCALING_METRIC = AUTOSCALING_METRICS["concurrency"]


@dataclass(frozen=True)
class Scenario:
    duration_s: float = 480.0
    phases: tuple[tuple[float, float], ...] = ((120.0, 2.0), (180.0, 9.0), (180.0, 2.0))  #: (seconds, req/s)
    initial_engines: int = 2
    max_engines: int = 6
    scrape_interval_s: float = 1.0  #: the gateway's
    scaler_scrape_interval_s: float = 2.0
    startup_s: tuple[float, float] = (20.0, 40.0)
    seed: int = 11


def make_trace(s: Scenario) -> list[SimRequest]:
    """Chat sessions (shared system prompt, growing contexts) arriving in Poisson phases."""
    rng = random.Random(f"dialects-{s.seed}")
    times: list[float] = []
    start = 0.0
    for length, rate in s.phases:
        times += [start + t for t in poisson(rate, rng, duration_s=length)]
        start += length
    return to_sim_requests(chat_sessions(times, rng, model=MODEL))


@dataclass
class Outcome:
    picks: list[tuple[str, int]] = field(default_factory=list)
    decisions: list[tuple[float, int, int]] = field(default_factory=list)
    unknown_samples: int = 0  #: scrapes in which the gateway learned no running count
    unread_pages: int = 0  #: pod pages the scaler found no metric in


class DialectRig:
    """The gateway's and the scaler's view of a simulated fleet, through one dialect."""

    def __init__(self, sim: Simulation, router: Router, target: ScalingTarget, pages: str, reader: str | None,
                 s: Scenario, outcome: Outcome) -> None:  # fmt: skip
        self.sim, self.router, self.target, self.pages, self.reader, self.s = sim, router, target, pages, reader, s
        self.outcome = outcome
        self.table = EndpointTable(staleness_s=5 * s.scrape_interval_s)
        self.autoscaler = Autoscaler(target)
        self.rng = random.Random(f"startup-{s.seed}")
        self.previous: dict[int, tuple[float, Exposition]] = {}
        self._pages: dict[int, tuple[float, str]] = {}
        self.pending: dict[str, tuple[RouteRequest, EndpointState]] = {}
        self.settled = 0
        self.created: dict[int, float] = {i: 0.0 for i in range(len(sim.engines))}
        self.ready_at: dict[int, float] = {i: 0.0 for i in range(len(sim.engines))}
        self.removed: set[int] = set()

    @staticmethod
    def address(index: int) -> str:
        return f"10.0.0.{index + 1}:8000"

    def page(self, view: EngineView) -> str:
        """The engine's /metrics page now (rendered once per instant: gateway and scaler share it)."""
        cached = self._pages.get(view.index)
        if cached is not None and cached[0] == self.sim.now:
            return cached[1]
        cfg = view.config
        text = render_metrics(view.stats(), model_name=MODEL, max_loras=cfg.max_loras, block_size=cfg.block_size,
                              dialect=self.pages).decode()  # fmt: skip
        self._pages[view.index] = (self.sim.now, text)
        return text

    # -- the gateway ------------------------------------------------------------------------

    def scrape(self, sim: Simulation, now: float) -> None:
        self.settle()
        views = sim.routable()
        self.table.replace([DiscoveredEndpoint(self.address(v.index), f"engine-{v.index}", MODEL) for v in views])
        for view in views:
            exposition = parse_exposition(self.page(view))
            before = self.previous.get(view.index)
            sample = sample_from_metrics(exposition, before[1] if before else None,
                                         now - before[0] if before else 0.0, frozenset(), self.reader)  # fmt: skip
            self.previous[view.index] = (now, exposition)
            self.table.record_sample(self.address(view.index), sample, now)
            self.outcome.unknown_samples += sample.running is None
        if now + self.s.scrape_interval_s < self.s.duration_s:
            sim.call_at(now + self.s.scrape_interval_s, self.scrape)

    def settle(self) -> None:
        records: Sequence[RequestRecord] = self.sim.records
        for record in records[self.settled :]:
            pending = self.pending.pop(record.request_id, None)
            if pending is None:
                continue
            req, endpoint = pending
            self.table.inflight_add(endpoint.address, -1)
            outcome = RequestOutcome(success=record.error is None, prompt_tokens=record.prompt_tokens,
                                     completion_tokens=record.output_tokens, ttft_s=record.ttft_s, e2e_s=record.e2e_s)
            self.router.on_finished(req, endpoint, outcome)
        self.settled = len(records)

    def route(self, sim_req: SimRequest, views: Sequence[EngineView]) -> int:
        self.settle()
        states, _ = self.table.states(MODEL, self.sim.now)
        by_address = {e.address: e for e in states}
        endpoints = [by_address.get(self.address(v.index)) or EndpointState(address=self.address(v.index), model=MODEL)
                     for v in views]  # fmt: skip
        req = RouteRequest(model=MODEL, token_ids=sim_req.prompt_token_ids, session_id=sim_req.session_id)
        chosen = self.router.pick(req, endpoints)
        position = next(i for i, e in enumerate(endpoints) if e.address == chosen.address)
        self.router.on_routed(req, chosen)
        self.table.inflight_add(chosen.address, 1)
        self.pending[sim_req.request_id] = (req, chosen)
        self.outcome.picks.append((sim_req.request_id, views[position].index))
        return position

    # -- the scaler -------------------------------------------------------------------------

    def measure(self, sim: Simulation, now: float) -> None:
        total, reporting = 0.0, 0
        ready = sim.routable()
        for view in ready:
            sample = parse_pod_sample(self.page(view), SCALING_METRIC.names, {"model_name": MODEL}, self.reader)
            if sample is None:
                self.outcome.unread_pages += 1
                continue
            total, reporting = total + sample.value, reporting + 1
        if reporting:
            self.autoscaler.record(now, total, reporting, expected_pods=len(ready))
        if now + self.s.scaler_scrape_interval_s < self.s.duration_s:
            sim.call_at(now + self.s.scaler_scrape_interval_s, self.measure)

    def decide(self, sim: Simulation, now: float) -> None:
        current = [i for i in self.created if i not in self.removed]
        ready = sum(1 for i in current if self.ready_at[i] <= now)
        decision = self.autoscaler.decide(now, len(current), ready)
        desired = min(decision.desired, self.s.max_engines)
        if desired > len(current):
            for _ in range(desired - len(current)):
                delay = self.rng.uniform(*self.s.startup_s)
                index = sim.add_engine(now, ready_after_s=delay)
                self.created[index], self.ready_at[index] = now, now + delay
        elif desired < len(current):
            order = sorted(current, key=lambda i: (self.ready_at[i] <= now, -self.created[i]))
            for index in order[: len(current) - desired]:
                sim.remove_engine(now, index)
                self.removed.add(index)
        if desired != len(current):
            self.autoscaler.applied(now, len(current), desired)
            self.outcome.decisions.append((round(now, 3), len(current), desired))
        if now + self.target.sync_period_seconds < self.s.duration_s:
            sim.call_at(now + self.target.sync_period_seconds, self.decide)


def scaling_target(s: Scenario) -> ScalingTarget:
    m = SCALING_METRIC
    return ScalingTarget.model_validate({
        "name": MODEL, "scaleTargetRef": {"name": MODEL, "namespace": "bench"},
        "podSelector": {"model.aibrix.ai/name": MODEL},
        "metric": {"name": m.prometheus_name, "sumWith": list(m.sum_with), "source": "engine", "aggregation": "per-pod"},
        "target": 10, "minReplicas": 1, "maxReplicas": s.max_engines, "policy": "kpa",
        "scrapeIntervalSeconds": s.scaler_scrape_interval_s,
        "kpa": {"scaleDownDelaySeconds": 60},
    })  # fmt: skip


def run_variant(variant: str, policy: str, trace: list[SimRequest], s: Scenario) -> Outcome:
    pages, reader = VARIANTS[variant]
    outcome = Outcome()
    router = build_router(RoutingSpec(policy=policy), rng=random.Random(s.seed))
    target = scaling_target(s)
    holder: list[DialectRig] = []
    sim = Simulation([ENGINE] * s.initial_engines, lambda req, views: holder[0].route(req, views))
    rig = DialectRig(sim, router, target, pages, reader, s, outcome)
    holder.append(rig)
    sim.call_at(0.0, rig.scrape)
    sim.call_at(0.0, rig.measure)
    sim.call_at(target.sync_period_seconds, rig.decide)
    sim.run(trace, until_s=s.duration_s + 300.0)
    return outcome


def _first_difference(a: Sequence[Any], b: Sequence[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"#{i}: {x} vs {y}"
    return "" if len(a) == len(b) else f"lengths {len(a)} vs {len(b)}"


def run(quick: bool = True, *, scenario: Scenario | None = None, policies: Sequence[str] | None = None) -> dict[str, Any]:
    """Every variant under every policy; the RESULT dict (``dialect_decisions_identical`` ...)."""
    s = scenario or (Scenario() if quick else Scenario(duration_s=1200.0, phases=((300.0, 2.0), (400.0, 9.0), (500.0, 2.0))))
    chosen = tuple(policies) if policies is not None else (QUICK_POLICIES if quick else FULL_POLICIES)
    trace = make_trace(s)
    rows: list[dict[str, Any]] = []
    identical = True
    blind_differs = True
    for policy in chosen:
        outcomes: dict[str, Outcome] = {}
        for variant in VARIANTS:
            started = time.perf_counter()
            outcomes[variant] = run_variant(variant, policy, trace, s)
            o, ref = outcomes[variant], outcomes["vllm"]
            same_picks, same_decisions = o.picks == ref.picks, o.decisions == ref.decisions
            rows.append({
                "policy": policy, "variant": variant, "picks": len(o.picks),
                "engines_used": len({e for _, e in o.picks}), "scale_events": len(o.decisions),
                "same_picks": same_picks, "same_decisions": same_decisions,
                "first_difference": _first_difference(o.picks, ref.picks) or _first_difference(o.decisions, ref.decisions),
                "unknown_samples": o.unknown_samples, "unread_pages": o.unread_pages,
                "wall_s": round(time.perf_counter() - started, 2),
            })  # fmt: skip
            if variant in ("sglang", "sglang-detect"):
                identical = identical and same_picks and same_decisions
            if variant == "sglang-blind":
                blind_differs = blind_differs and not (same_picks and same_decisions)
    reference = [r for r in rows if r["variant"] == "vllm"]
    return {
        "dialect_decisions_identical": identical,
        "requests": len(trace),
        "policies": list(chosen),
        "routing_picks": sum(r["picks"] for r in reference),
        "scaling_decisions": sum(r["scale_events"] for r in reference),
        "nontrivial": all(r["scale_events"] >= 2 and r["engines_used"] >= 2 for r in reference),
        "blind_baseline_differs": blind_differs,
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    head = f"{'policy':<58} {'variant':<14} {'picks':>6} {'engines':>7} {'scales':>6} {'same picks':>10} " \
           f"{'same scales':>11} {'unknown':>7}  first difference"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(
            f"{r['policy'][:58]:<58} {r['variant']:<14} {r['picks']:>6} {r['engines_used']:>7} {r['scale_events']:>6} "
            f"{str(r['same_picks']):>10} {str(r['same_decisions']):>11} {r['unknown_samples']:>7}  {r['first_difference']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metric_dialects", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one composite routing policy, an 8-minute trace")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(format_table(result))
    print()
    verdict = "identical" if result["dialect_decisions_identical"] else "NOT identical"
    print(f"SGLang-dialect routing picks and scaling decisions are {verdict} to vLLM's "
          f"({result['routing_picks']} picks, {result['scaling_decisions']} scaling decisions); "
          f"reading SGLang pages with vLLM names (the blind baseline) "
          f"{'differs' if result['blind_baseline_differs'] else 'does NOT differ'}.")  # fmt: skip
    summary = {k: v for k, v in result.items() if k != "rows"}
    print("RESULT " + json.dumps(summary, sort_keys=True))
    return 0 if result["dialect_decisions_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
