"""Small placement ILPs with optima worked out by hand, solved by both backends."""

from __future__ import annotations

import pytest

from runtime_components.optimizer.errors import InfeasibleError, OptimizerError
from runtime_components.optimizer.problem import ModelTerms, PlacementProblem, PoolTerms
from runtime_components.optimizer.solve import solve_placement

SOLVERS = ["cbc", "highs"]
CHAT = ("m", 512, 128)
SQL = ("m", 2048, 32)


def problem(*, pools=(("a10", 0.75, None), ("l20", 1.10, None)), models=None, demand=None, capacity=None,
            assignment="fractional", slices=4) -> PlacementProblem:
    return PlacementProblem(
        pools=tuple(PoolTerms(*p) for p in pools),
        models=tuple(models or (ModelTerms("m", 1, ("a10", "l20"), 0, None),)),
        demand=demand if demand is not None else {CHAT: 3.0},
        capacity=capacity if capacity is not None else {(CHAT, "a10"): 1.0, (CHAT, "l20"): 2.0},
        assignment=assignment,
        slices_per_bucket=slices,
    )


# (id, problem, expected cost per hour, expected replicas per (model, pool))
OPTIMA = [
    # 3 req/s: one L20 (2 req/s) plus one A10 (1 req/s) beats 2 x L20 (2.20) and 3 x A10 (2.25).
    ("mix-beats-homogeneous", problem(), 1.85, {("m", "a10"): 1, ("m", "l20"): 1}),
    # Integral assignment with one slice: the cell goes whole to one pool, so 2 x L20.
    ("integral-one-slice", problem(assignment="integral", slices=1), 2.20, {("m", "a10"): 0, ("m", "l20"): 2}),
    # Two slices of 1.5 req/s: one to each pool needs 2 A10 (1.5) + 1 L20 = 2.60, so both go to L20.
    ("integral-two-slices", problem(assignment="integral", slices=2), 2.20, {("m", "a10"): 0, ("m", "l20"): 2}),
    # The L20 pool has no GPUs to give: all on A10.
    ("cap-zero", problem(pools=(("a10", 0.75, None), ("l20", 1.10, 0))), 2.25, {("m", "a10"): 3, ("m", "l20"): 0}),
    # No traffic, but two replicas must stay up: the cheapest pool holds them.
    ("min-replicas-no-traffic", problem(models=(ModelTerms("m", 1, ("a10", "l20"), 2, None),), demand={}),
     1.50, {("m", "a10"): 2, ("m", "l20"): 0}),
    # Two GPUs per replica double every replica's cost.
    ("two-gpus-per-replica", problem(models=(ModelTerms("m", 2, ("a10", "l20"), 0, None),)), 3.70,
     {("m", "a10"): 1, ("m", "l20"): 1}),
    # Each cell prefers a different pool: chat on L20 (0.55 $/req/s), SQL on A10 (0.75 vs 2.75).
    ("cells-split-by-shape",
     problem(demand={CHAT: 2.0, SQL: 1.0},
             capacity={(CHAT, "a10"): 1.0, (CHAT, "l20"): 2.0, (SQL, "a10"): 1.0, (SQL, "l20"): 0.4}),
     1.85, {("m", "a10"): 1, ("m", "l20"): 1}),
    # A cell no pool can serve is fine when its rate is zero.
    ("zero-rate-unservable-cell", problem(demand={CHAT: 1.0, SQL: 0.0}), 0.75, {("m", "a10"): 1, ("m", "l20"): 0}),
    # Two models share the L20 cap of 1 GPU: the second model's load moves to A10.
    ("shared-cap-two-models",
     problem(pools=(("a10", 0.75, None), ("l20", 1.10, 1)),
             models=(ModelTerms("m", 1, ("a10", "l20"), 0, None), ModelTerms("k", 1, ("a10", "l20"), 0, None)),
             demand={CHAT: 2.0, ("k", 512, 128): 2.0},
             capacity={(CHAT, "a10"): 1.0, (CHAT, "l20"): 2.0,
                       (("k", 512, 128), "a10"): 1.0, (("k", 512, 128), "l20"): 2.0}),
     1.10 + 2 * 0.75, None),
    # Workload of a model the config does not know is ignored (and reported in the plan).
    ("unknown-model-ignored", problem(demand={CHAT: 1.0, ("other", 16, 16): 5.0}), 0.75, None),
]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case_id, prob, cost, replicas", OPTIMA, ids=[c[0] for c in OPTIMA])
def test_known_optima(solver, case_id, prob, cost, replicas):
    plan = solve_placement(prob, solver=solver)
    assert plan.status == "optimal"
    assert plan.cost_per_hour == pytest.approx(cost)
    if replicas is not None:
        assert plan.replicas() == replicas
    # Every cell with traffic is fully routed.
    for cell, rate in prob.demand.items():
        if rate > 0 and cell[0] in {m.name for m in prob.models}:
            assert sum(plan.routing[cell].values()) == pytest.approx(1.0)


def test_unknown_model_is_reported():
    plan = solve_placement(OPTIMA[-1][1], solver="cbc")
    assert plan.unknown_models == ("other",)


def test_busy_fraction_reflects_target_utilization():
    plan = solve_placement(problem(demand={CHAT: 1.8}, pools=(("a10", 0.75, 0), ("l20", 1.10, None))),
                           solver="highs", target_utilization=0.9)
    (l20,) = [p for p in plan.pools if p.pool == "l20"]
    assert l20.replicas == 1 and l20.assigned_rps == pytest.approx(1.8)
    assert l20.busy == pytest.approx(0.9 * 1.8 / 2.0)


INFEASIBLE = [
    ("cap-binds",
     problem(pools=(("a10", 0.75, 1),), models=(ModelTerms("m", 1, ("a10",), 0, None),),
             capacity={(CHAT, "a10"): 1.0}),
     ["pool 'a10': maxGpus 1 binds; the SLO needs about 3 GPUs there (+2), or the same capacity in other pools"]),
    ("max-replicas-binds",
     problem(models=(ModelTerms("m", 1, ("a10", "l20"), 0, 1),)),
     ["model 'm': maxReplicas 1 binds; the SLO needs at least 2 replicas"]),
    ("min-replicas-above-cap",
     problem(pools=(("a10", 0.75, 2),), models=(ModelTerms("m", 1, ("a10",), 3, None),), demand={}),
     ["pool 'a10': maxGpus 2 binds; the SLO needs about 3 GPUs there (+1), or the same capacity in other pools"]),
    ("unservable-cell",
     problem(demand={SQL: 0.5}, capacity={(SQL, "a10"): 0.0}),
     ["model 'm': requests with <= 2048 input and <= 32 output tokens (0.5 req/s) meet the SLO on none of its "
      "pools (a10, l20): the profiles give 0 req/s there or do not reach that size; relax the SLO, add a faster "
      "pool, extend the profile grid, or cap request sizes"]),
]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case_id, prob, reasons", INFEASIBLE, ids=[c[0] for c in INFEASIBLE])
def test_infeasible_reports_binding_constraint(solver, case_id, prob, reasons):
    with pytest.raises(InfeasibleError) as info:
        solve_placement(prob, solver=solver)
    assert info.value.reasons == reasons
    assert str(info.value).startswith("no plan meets the SLO within the constraints:\n  - ")


def test_empty_workload_and_no_minimum_costs_nothing():
    plan = solve_placement(problem(demand={}), solver="cbc")
    assert plan.cost_per_hour == 0 and plan.routing == {}
    assert all(p.replicas == 0 and p.busy == 0 for p in plan.pools)


def test_unknown_solver_is_named():
    with pytest.raises(OptimizerError, match="unknown solver 'gurobi'; expected one of cbc, highs"):
        solve_placement(problem(), solver="gurobi")


@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_agree_on_a_larger_random_problem(solver):
    import random

    rng = random.Random(7)
    pools = tuple((f"p{j}", round(rng.uniform(0.5, 3.0), 2), None) for j in range(5))
    cells = [("m", 16 << rng.randrange(8), 16 << rng.randrange(6)) for _ in range(30)]
    demand = {c: rng.uniform(0.1, 3.0) for c in cells}
    capacity = {(c, p[0]): rng.uniform(0.2, 4.0) for c in demand for p in pools}
    prob = problem(pools=pools, models=(ModelTerms("m", 1, tuple(p[0] for p in pools), 0, None),),
                   demand=demand, capacity=capacity)
    reference = solve_placement(prob, solver="cbc").cost_per_hour
    assert solve_placement(prob, solver=solver).cost_per_hour == pytest.approx(reference, rel=1e-6)
