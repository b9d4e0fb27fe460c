"""From config + profiles + workload to a plan (replicas per model and pool), or a report.

    resolve_profiles   config x ProfileSet (x deriver) -> profile per (model, pool)
    build_problem      config x profiles x workload -> PlacementProblem (capacities =
                       profiled max rate x targetUtilization)
    solve_placement    PlacementProblem -> Plan, or InfeasibleError naming what binds

Infeasibility is explained in two steps: a cell no allowed pool can serve at any rate is
reported directly (no solver needed); otherwise the elastic variant of the ILP (caps and
max-replica bounds with slack, minimising total slack in GPUs) says which limits must
rise, and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from aibrix_spec.components.optimizer import GpuProfile, OptimizerConfig, OptimizerModel
from runtime_components.optimizer.backends import BACKENDS, MilpSolution
from runtime_components.optimizer.errors import InfeasibleError, OptimizerError
from runtime_components.optimizer.problem import (
    Formulation,
    ModelTerms,
    PlacementProblem,
    PoolTerms,
    formulate,
)
from runtime_components.optimizer.profiles import ProfileSet, rate_of
from runtime_components.optimizer.workload import Cell, Workload

__all__ = ["PoolPlan", "Plan", "resolve_profiles", "build_problem", "solve_placement", "plan_from_config", "Deriver"]

#: Builds a profile for (model, accelerator) when no file has one.
Deriver = Callable[[OptimizerModel, str], GpuProfile]

_EPS = 1e-6


@dataclass(frozen=True)
class PoolPlan:
    model: str
    pool: str
    accelerator: str
    replicas: int
    gpus: int
    cost_per_hour: float
    assigned_rps: float  # requests/s routed to this pool
    busy: float  # mean fraction of profiled max rate per replica (0 when no replicas)


@dataclass(frozen=True)
class Plan:
    pools: tuple[PoolPlan, ...]
    routing: dict[Cell, dict[str, float]]  # cell -> pool -> share of the cell's requests
    cost_per_hour: float
    solver: str
    status: Literal["optimal", "feasible"]
    solve_seconds: float
    unknown_models: tuple[str, ...] = field(default=())  # workload models absent from config

    def replicas(self) -> dict[tuple[str, str], int]:
        return {(p.model, p.pool): p.replicas for p in self.pools}


def resolve_profiles(
    config: OptimizerConfig, profiles: ProfileSet, deriver: Deriver | None
) -> dict[tuple[str, str], GpuProfile]:
    """The profile of each (model, pool); derives (once per accelerator) what files lack."""
    resolved: dict[tuple[str, str], GpuProfile] = {}
    for model in config.models:
        for pool_name in model.pools:
            accelerator = config.pool(pool_name).accelerator
            key = (model.name, accelerator, model.gpus_per_replica)
            if profiles.get(*key) is None:
                if deriver is None or not config.derive_missing_profiles:
                    known = ", ".join(f"{m}@{a}x{g}" for m, a, g in sorted(profiles.profiles)) or "none"
                    raise OptimizerError(
                        f"no profile for model {model.name!r} on {accelerator} with {model.gpus_per_replica} "
                        f"GPU(s) per replica (pool {pool_name!r}); loaded profiles: {known}\n"
                        f"  hint: run `aibrix-optimize derive` or `aibrix-optimize profile`, or enable "
                        f"deriveMissingProfiles"
                    )
                profiles.add(deriver(model, accelerator), origin=f"derived:{model.arch_name}@{accelerator}")
            profiles.check_slo(key, model.slo)
            resolved[(model.name, pool_name)] = profiles.profiles[key]
    return resolved


def build_problem(
    config: OptimizerConfig, profiles: dict[tuple[str, str], GpuProfile], workload: Workload
) -> PlacementProblem:
    capacity: dict[tuple[Cell, str], float] = {}
    model_pools = {m.name: m.pools for m in config.models}
    for cell, rate in workload.items():
        if rate <= 0 or cell[0] not in model_pools:
            continue
        for pool_name in model_pools[cell[0]]:
            profile = profiles[(cell[0], pool_name)]
            capacity[(cell, pool_name)] = rate_of(profile, cell[1], cell[2]) * config.target_utilization
    return PlacementProblem(
        pools=tuple(PoolTerms(p.name, p.cost_per_gpu_hour, p.max_gpus) for p in config.pools),
        models=tuple(
            ModelTerms(m.name, m.gpus_per_replica, tuple(m.pools), m.min_replicas, m.max_replicas)
            for m in config.models
        ),
        demand=dict(workload),
        capacity=capacity,
        assignment=config.assignment,
        slices_per_bucket=config.slices_per_bucket,
    )


def solve_placement(
    problem: PlacementProblem,
    *,
    solver: str = "cbc",
    time_limit_s: float = 10.0,
    target_utilization: float = 1.0,
    accelerators: dict[str, str] | None = None,
) -> Plan:
    """Solve the ILP; raise InfeasibleError with the binding constraints when none exists."""
    if solver not in BACKENDS:
        raise OptimizerError(f"unknown solver {solver!r}; expected one of {', '.join(BACKENDS)}")
    reasons = _unservable_cells(problem)
    if reasons:
        raise InfeasibleError(reasons)
    formulation = formulate(problem)
    solution = BACKENDS[solver](formulation.milp, time_limit_s=time_limit_s)
    if solution.status == "infeasible":
        raise InfeasibleError(_diagnose(problem, solver, time_limit_s))
    if solution.status == "error":
        raise OptimizerError(f"solver {solver} failed: {solution.detail}")
    return _decode(problem, formulation, solution, solver, target_utilization, accelerators or {})


def _unservable_cells(problem: PlacementProblem) -> list[str]:
    reasons = []
    models = {m.name: m for m in problem.models}
    for cell in sorted(problem.demand):
        rate = problem.demand[cell]
        if rate <= 0 or cell[0] not in models:
            continue
        pools = models[cell[0]].pools
        if all(problem.capacity.get((cell, p), 0.0) <= 0 for p in pools):
            reasons.append(
                f"model {cell[0]!r}: requests with <= {cell[1]} input and <= {cell[2]} output tokens "
                f"({rate:.3g} req/s) meet the SLO on none of its pools ({', '.join(pools)}): the profiles "
                f"give 0 req/s there or do not reach that size; relax the SLO, add a faster pool, extend "
                f"the profile grid, or cap request sizes"
            )
    return reasons


def _diagnose(problem: PlacementProblem, solver: str, time_limit_s: float) -> list[str]:
    elastic = formulate(problem, elastic=True)
    solution = BACKENDS[solver](elastic.milp, time_limit_s=time_limit_s)
    if solution.status not in ("optimal", "feasible"):
        return [f"the problem is infeasible and the diagnosis failed too ({solution.detail})"]
    pools = {p.name: p for p in problem.pools}
    models = {m.name: m for m in problem.models}
    reasons = []
    for name, index in sorted(elastic.slacks.items()):
        slack = solution.values[index]
        if slack <= _EPS:
            continue
        kind, _, target = name.partition(":")
        extra = math.ceil(slack - _EPS)
        if kind == "pool":
            cap = pools[target].max_gpus
            reasons.append(
                f"pool {target!r}: maxGpus {cap} binds; the SLO needs about {cap + extra} GPUs there "
                f"(+{extra}), or the same capacity in other pools"
            )
        else:
            bound = models[target].max_replicas
            reasons.append(
                f"model {target!r}: maxReplicas {bound} binds; the SLO needs at least "
                f"{bound + math.ceil(extra / models[target].gpus_per_replica)} replicas"
            )
    return reasons or ["the solver reports infeasible, but no cap or bound needs to move (numerical trouble?)"]


def _decode(
    problem: PlacementProblem,
    formulation: Formulation,
    solution: MilpSolution,
    solver: str,
    target_utilization: float,
    accelerators: dict[str, str],
) -> Plan:
    values = solution.values
    pools = {p.name: p for p in problem.pools}
    routing: dict[Cell, dict[str, float]] = {}
    assigned: dict[tuple[str, str], float] = {}
    busy_load: dict[tuple[str, str], float] = {}
    for (cell, pool_name), index in formulation.shares.items():
        share = values[index] / formulation.share_scale
        if share <= _EPS:
            continue
        routing.setdefault(cell, {})[pool_name] = round(share, 6)
        rps = problem.demand[cell] * share
        key = (cell[0], pool_name)
        assigned[key] = assigned.get(key, 0.0) + rps
        busy_load[key] = busy_load.get(key, 0.0) + rps / problem.capacity[(cell, pool_name)]
    pool_plans = []
    for model in problem.models:
        for pool_name in model.pools:
            replicas = int(round(values[formulation.replicas[(model.name, pool_name)]]))
            gpus = replicas * model.gpus_per_replica
            load = busy_load.get((model.name, pool_name), 0.0)
            pool_plans.append(
                PoolPlan(
                    model=model.name,
                    pool=pool_name,
                    accelerator=accelerators.get(pool_name, ""),
                    replicas=replicas,
                    gpus=gpus,
                    cost_per_hour=gpus * pools[pool_name].cost_per_gpu_hour,
                    assigned_rps=assigned.get((model.name, pool_name), 0.0),
                    busy=load * target_utilization / replicas if replicas else 0.0,
                )
            )
    known = {m.name for m in problem.models}
    unknown = tuple(sorted({c[0] for c, r in problem.demand.items() if r > 0 and c[0] not in known}))
    return Plan(
        pools=tuple(pool_plans),
        routing=routing,
        cost_per_hour=sum(p.cost_per_hour for p in pool_plans),
        solver=solver,
        status=solution.status,  # type: ignore[arg-type]
        solve_seconds=solution.seconds,
        unknown_models=unknown,
    )


def plan_from_config(
    config: OptimizerConfig,
    profiles: dict[tuple[str, str], GpuProfile],
    workload: Workload,
    *,
    solver: str | None = None,
) -> Plan:
    """Convenience: build and solve with the config's solver settings."""
    return solve_placement(
        build_problem(config, profiles, workload),
        solver=solver or config.solver,
        time_limit_s=config.solver_time_limit_seconds,
        target_utilization=config.target_utilization,
        accelerators={p.name: p.accelerator for p in config.pools},
    )
