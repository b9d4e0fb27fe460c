"""The placement ILP (after Melange) in a solver-neutral matrix form.

Indices: models m, their demand cells c (input bucket, output bucket) with rate L_c req/s,
pools p the model may use. ``R_cp`` is the profiled max rate per replica of m on p's
accelerator for cell c, times the target utilization.

    variables  n_mp in Z, 0 <= n_mp            replicas of model m in pool p
               x_cp in [0, 1] (fractional)     share of cell c's requests sent to pool p
                 or in {0..S} (integral)       slices of cell c sent to pool p (share x/S)
    minimise   sum_mp  g_m * k_p * n_mp        g_m GPUs per replica, k_p USD per GPU-hour
    subject to sum_p x_cp = 1 (or S)                           every request is served
               sum_c (L_c / R_cp) * x_cp (/S) - n_mp <= 0      replicas carry their load
               sum_m g_m * n_mp <= maxGpus_p                   per-pool GPU cap
               min_m <= sum_p n_mp <= max_m                    replica bounds per model

The capacity row treats a replica as a server whose busy fraction is the sum of
``load / max rate`` over the cells it serves (Melange's linear mixing assumption); the
benchmark checks plans by simulation because of it. Fractional assignment is the default:
the gateway routes request by request, so any split of a cell is realisable, and the LP
relaxation is tighter (faster solves); integral slices reproduce Melange exactly.

``elastic=True`` builds the diagnosis variant: caps and max-replica rows get a slack
variable, and the objective becomes the total slack (in GPUs), so the solution says which
limits must move, and by how much, for a plan to exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Variable",
    "Row",
    "Milp",
    "PoolTerms",
    "ModelTerms",
    "PlacementProblem",
    "Formulation",
    "formulate",
]

CellKey = tuple[str, int, int]  # (model, input bucket, output bucket)


@dataclass(frozen=True)
class Variable:
    name: str
    lower: float
    upper: float  # math.inf when unbounded
    integer: bool
    cost: float


@dataclass(frozen=True)
class Row:
    """``lower <= sum(coef * var) <= upper``; equal bounds make an equality."""

    name: str
    terms: tuple[tuple[int, float], ...]
    lower: float
    upper: float


@dataclass
class Milp:
    variables: list[Variable] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def add_variable(self, name: str, *, lower: float = 0.0, upper: float = math.inf,
                     integer: bool = False, cost: float = 0.0) -> int:
        self.variables.append(Variable(name, lower, upper, integer, cost))
        return len(self.variables) - 1

    def add_row(self, name: str, terms: list[tuple[int, float]], *, lower: float = -math.inf,
                upper: float = math.inf) -> None:
        self.rows.append(Row(name, tuple(terms), lower, upper))


@dataclass(frozen=True)
class PoolTerms:
    name: str
    cost_per_gpu_hour: float
    max_gpus: int | None


@dataclass(frozen=True)
class ModelTerms:
    name: str
    gpus_per_replica: int
    pools: tuple[str, ...]
    min_replicas: int
    max_replicas: int | None


@dataclass(frozen=True)
class PlacementProblem:
    """Everything the ILP needs, already resolved from config, profiles and workload."""

    pools: tuple[PoolTerms, ...]
    models: tuple[ModelTerms, ...]
    demand: dict[CellKey, float]  # req/s per cell; cells of unknown models are ignored
    capacity: dict[tuple[CellKey, str], float]  # usable req/s per replica; absent or 0 = cannot serve
    assignment: Literal["fractional", "integral"] = "fractional"
    slices_per_bucket: int = 4


@dataclass
class Formulation:
    milp: Milp
    replicas: dict[tuple[str, str], int]  # (model, pool) -> variable index
    shares: dict[tuple[CellKey, str], int]  # (cell, pool) -> variable index
    slacks: dict[str, int]  # "pool:<name>" / "model:<name>" -> slack variable index
    share_scale: float  # divide a share variable by this to get the fraction


def formulate(problem: PlacementProblem, *, elastic: bool = False) -> Formulation:
    """Build the ILP (or its elastic diagnosis variant) for ``problem``."""
    milp = Milp()
    pools = {p.name: p for p in problem.pools}
    integral = problem.assignment == "integral"
    scale = float(problem.slices_per_bucket) if integral else 1.0

    replicas: dict[tuple[str, str], int] = {}
    for model in problem.models:
        for pool_name in model.pools:
            pool = pools[pool_name]
            cost = 0.0 if elastic else model.gpus_per_replica * pool.cost_per_gpu_hour
            replicas[(model.name, pool_name)] = milp.add_variable(
                f"n[{model.name},{pool_name}]", integer=True, cost=cost
            )

    shares: dict[tuple[CellKey, str], int] = {}
    load_terms: dict[tuple[str, str], list[tuple[int, float]]] = {key: [] for key in replicas}
    model_pools = {m.name: m.pools for m in problem.models}
    for cell in sorted(problem.demand):
        rate = problem.demand[cell]
        if rate <= 0 or cell[0] not in model_pools:
            continue
        cover: list[tuple[int, float]] = []
        for pool_name in model_pools[cell[0]]:
            per_replica = problem.capacity.get((cell, pool_name), 0.0)
            if per_replica <= 0:
                continue
            index = milp.add_variable(
                f"x[{cell[0]},{cell[1]},{cell[2]},{pool_name}]", upper=scale, integer=integral
            )
            shares[(cell, pool_name)] = index
            cover.append((index, 1.0))
            load_terms[(cell[0], pool_name)].append((index, rate / (per_replica * scale)))
        milp.add_row(f"cover[{cell[0]},{cell[1]},{cell[2]}]", cover, lower=scale, upper=scale)

    for (model_name, pool_name), terms in load_terms.items():
        if terms:
            milp.add_row(f"load[{model_name},{pool_name}]",
                         terms + [(replicas[(model_name, pool_name)], -1.0)], upper=0.0)

    slacks: dict[str, int] = {}
    for pool in problem.pools:
        users = [(replicas[(m.name, pool.name)], float(m.gpus_per_replica))
                 for m in problem.models if (m.name, pool.name) in replicas]
        if pool.max_gpus is None or not users:
            continue
        if elastic:
            slacks[f"pool:{pool.name}"] = slack = milp.add_variable(f"slack[pool:{pool.name}]", cost=1.0)
            users.append((slack, -1.0))
        milp.add_row(f"cap[{pool.name}]", users, upper=float(pool.max_gpus))

    for model in problem.models:
        own = [(replicas[(model.name, p)], 1.0) for p in model.pools]
        if model.min_replicas > 0:
            milp.add_row(f"min[{model.name}]", own, lower=float(model.min_replicas))
        if model.max_replicas is not None:
            if elastic:
                slack = milp.add_variable(f"slack[model:{model.name}]", cost=float(model.gpus_per_replica))
                slacks[f"model:{model.name}"] = slack
                own = own + [(slack, -1.0)]
            milp.add_row(f"max[{model.name}]", own, upper=float(model.max_replicas))

    return Formulation(milp, replicas, shares, slacks, scale)
