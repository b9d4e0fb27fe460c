"""Two MILP backends for one ``Milp``: CBC through PuLP, and HiGHS through highspy directly.

Both receive the same matrix, the same relative MIP gap and time limit, and return a
``MilpSolution`` with a normalised status, so the benchmark compares solvers and not
formulations. PuLP runs CBC as a subprocess (a few milliseconds of floor per solve);
highspy solves in process from a row-wise sparse matrix.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from runtime_components.optimizer.problem import Milp

__all__ = ["MilpSolution", "Status", "solve_cbc", "solve_highs", "BACKENDS", "MIP_REL_GAP"]

Status = Literal["optimal", "feasible", "infeasible", "error"]

#: Both solvers stop within this relative gap; costs are sums of GPU prices, so the
#: gap is far below one GPU's price for any realistic plan.
MIP_REL_GAP = 1e-6


@dataclass(frozen=True)
class MilpSolution:
    status: Status  # feasible = a solution, but the time limit stopped the proof of optimality
    values: tuple[float, ...]
    objective: float
    seconds: float  # wall time of model build + solve
    detail: str = ""


def solve_cbc(milp: Milp, *, time_limit_s: float = 10.0) -> MilpSolution:
    import pulp

    start = time.perf_counter()
    model = pulp.LpProblem("aibrix_placement", pulp.LpMinimize)
    # PuLP >= 3 owns variables through the problem; older PuLP builds them directly.
    new_variable = getattr(model, "add_variable", pulp.LpVariable)
    variables = [
        new_variable(
            f"v{i}",
            lowBound=v.lower if math.isfinite(v.lower) else None,
            upBound=v.upper if math.isfinite(v.upper) else None,
            cat=pulp.LpInteger if v.integer else pulp.LpContinuous,
        )
        for i, v in enumerate(milp.variables)
    ]
    model += pulp.LpAffineExpression([(variables[i], v.cost) for i, v in enumerate(milp.variables) if v.cost])
    for r, row in enumerate(milp.rows):
        expr = pulp.LpAffineExpression([(variables[i], c) for i, c in row.terms])
        if row.lower == row.upper:
            model += pulp.LpConstraint(expr, pulp.LpConstraintEQ, f"r{r}", row.lower)
            continue
        if math.isfinite(row.lower):
            model += pulp.LpConstraint(expr, pulp.LpConstraintGE, f"r{r}l", row.lower)
        if math.isfinite(row.upper):
            model += pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{r}u", row.upper)
    with warnings.catch_warnings():
        # PuLP 3.x flags its bundled-CBC class for removal in 4.0; it is still the one
        # that needs no system solver.
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=MIP_REL_GAP)
    code = model.solve(solver)
    seconds = time.perf_counter() - start
    status_name = pulp.LpStatus[code]
    if status_name == "Infeasible":
        return MilpSolution("infeasible", (), math.nan, seconds, "CBC: infeasible")
    if status_name != "Optimal":
        return MilpSolution("error", (), math.nan, seconds, f"CBC status {status_name}")
    values = tuple(float(v.varValue or 0.0) for v in variables)
    # PuLP reports Optimal for "stopped on time limit with a solution"; its solution status tells.
    status: Status = "optimal" if model.sol_status == pulp.LpSolutionOptimal else "feasible"
    objective = sum(v.cost * x for v, x in zip(milp.variables, values))
    return MilpSolution(status, values, objective, seconds)


def solve_highs(milp: Milp, *, time_limit_s: float = 10.0) -> MilpSolution:
    import highspy

    start = time.perf_counter()
    h = _new_highs(highspy)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", MIP_REL_GAP)
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = len(milp.variables)
    lp.num_row_ = len(milp.rows)
    lp.col_cost_ = [v.cost for v in milp.variables]
    lp.col_lower_ = [v.lower if math.isfinite(v.lower) else -inf for v in milp.variables]
    lp.col_upper_ = [v.upper if math.isfinite(v.upper) else inf for v in milp.variables]
    lp.row_lower_ = [r.lower if math.isfinite(r.lower) else -inf for r in milp.rows]
    lp.row_upper_ = [r.upper if math.isfinite(r.upper) else inf for r in milp.rows]
    starts, indices, coefficients = [0], [], []
    for row in milp.rows:
        for i, c in row.terms:
            indices.append(i)
            coefficients.append(c)
        starts.append(len(indices))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = indices
    lp.a_matrix_.value_ = coefficients
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if v.integer else highspy.HighsVarType.kContinuous for v in milp.variables
    ]
    h.passModel(lp)
    h.run()
    seconds = time.perf_counter() - start
    model_status = h.getModelStatus()
    statuses = highspy.HighsModelStatus
    if model_status in (statuses.kInfeasible, statuses.kUnboundedOrInfeasible):
        return MilpSolution("infeasible", (), math.nan, seconds, "HiGHS: infeasible")
    has_solution = h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
    if model_status == statuses.kOptimal:
        status: Status = "optimal"
    elif model_status in (statuses.kTimeLimit, statuses.kInterrupt) and has_solution:
        status = "feasible"
    else:
        return MilpSolution("error", (), math.nan, seconds, f"HiGHS status {h.modelStatusToString(model_status)}")
    values = tuple(float(x) for x in h.getSolution().col_value)
    objective = sum(v.cost * x for v, x in zip(milp.variables, values))
    return MilpSolution(status, values, objective, seconds)


def _new_highs(highspy: Any) -> Any:
    """A Highs instance; the first one of a process prints a banner from C, kept off stdout."""
    global _HIGHS_BANNER_SHOWN
    if _HIGHS_BANNER_SHOWN:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            instance = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _HIGHS_BANNER_SHOWN = True
    return instance


_HIGHS_BANNER_SHOWN = False

BACKENDS: dict[str, Callable[..., MilpSolution]] = {"cbc": solve_cbc, "highs": solve_highs}
