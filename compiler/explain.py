"""``aibrix-compile explain``: a table of what a stack will run and what it costs, then how
each model's weights reach its engine (hub, volume, streamed, or downloaded into a cache).

Cost per hour of a workload = replicas x gpusPerReplica x the pool's costPerGpuHour. A
disaggregated model has one row per role (its prefill and its decode GPUs), priced alike.
A model with a fixed count costs its planned split over its pools at both ends. An
autoscaled model is priced with replicas.min on its cheapest pool at min and with
replicas.max on its most expensive pool at max (an upper bound: the optimizer may
choose cheaper).
"""

from __future__ import annotations

from .plan import ModelPlan, Plan
from .plan.types import ScaleUnit

__all__ = ["explain_table", "model_costs", "unit_costs"]


def unit_costs(unit: ScaleUnit) -> tuple[float, float]:
    """(USD per hour at min, USD per hour at max) for a model, or one role of one."""
    prices = [w.pool.cost_per_gpu_hour for w in unit.workloads]
    if not unit.autoscaled:  # a fixed count costs the same at min and max
        fixed = sum((w.replicas or 0) * unit.gpus_per_replica * w.pool.cost_per_gpu_hour for w in unit.workloads)
        return fixed, fixed
    at_min = unit.replicas_min * unit.gpus_per_replica * min(prices)
    return at_min, unit.replicas_max * unit.gpus_per_replica * max(prices)


def model_costs(model: ModelPlan) -> tuple[float, float]:
    """(USD per hour at min, USD per hour at max) for one model (every role of it)."""
    costs = [unit_costs(u) for u in model.units()]
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def explain_table(plan: Plan) -> str:
    """A fixed-width table, one row per model plus a total."""
    header = ("MODEL", "POOLS", "GPUS/REPLICA", "REPLICAS", "$/H AT MIN", "$/H AT MAX")
    rows: list[tuple[str, ...]] = []
    total_min = total_max = 0.0
    for m in plan.models:
        for unit in m.units():
            at_min, at_max = unit_costs(unit)
            total_min, total_max = total_min + at_min, total_max + at_max
            pools = ",".join(w.pool.name for w in unit.workloads)
            name = m.name if unit.role is None else f"{m.name} ({unit.role})"
            rows.append((name, pools, str(unit.gpus_per_replica), f"{unit.replicas_min}-{unit.replicas_max}",
                         f"{at_min:.2f}", f"{at_max:.2f}"))
    rows.append(("TOTAL", "", "", "", f"{total_min:.2f}", f"{total_max:.2f}"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in [header, *rows]
    ]
    lines += ["", "WEIGHTS"] + [f"{m.name}: {m.weights.describe()}" for m in plan.models if m.weights is not None]
    return "\n".join(lines) + "\n"
