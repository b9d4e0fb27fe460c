"""Plans as text tables (the CLI) and JSON (the service's /plan and ``plan --json``)."""

from __future__ import annotations

from typing import Any

from runtime_components.optimizer.solve import Plan

__all__ = ["format_plan", "plan_to_json", "format_table"]


def format_table(headers: list[str], rows: list[list[str]], *, right: set[int] | None = None) -> str:
    """Left-aligned text columns (right-aligned for indices in ``right``)."""
    right = right or set()
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_plan(plan: Plan, *, routing: bool = False) -> str:
    rows = [
        [p.model, p.pool, p.accelerator, str(p.replicas), str(p.gpus), f"{p.assigned_rps:.2f}",
         f"{100 * p.busy:.0f}%", f"{p.cost_per_hour:.2f}"]
        for p in plan.pools
    ]
    rows.append(["total", "", "", str(sum(p.replicas for p in plan.pools)), str(sum(p.gpus for p in plan.pools)),
                 f"{sum(p.assigned_rps for p in plan.pools):.2f}", "", f"{plan.cost_per_hour:.2f}"])
    text = format_table(["model", "pool", "accelerator", "replicas", "gpus", "req/s", "busy", "$/hour"], rows,
                        right={3, 4, 5, 6, 7})
    text += f"\nsolver: {plan.solver} ({plan.status}) in {plan.solve_seconds:.3f} s"
    if plan.unknown_models:
        text += f"\nignored workload of models not in the config: {', '.join(plan.unknown_models)}"
    if routing and plan.routing:
        route_rows = [
            [cell[0], str(cell[1]), str(cell[2]), ", ".join(f"{pool} {share:.0%}" for pool, share in sorted(shares.items()))]
            for cell, shares in sorted(plan.routing.items())
        ]
        text += "\n\n" + format_table(["model", "input<=", "output<=", "share per pool"], route_rows, right={1, 2})
    return text


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "costPerHour": round(plan.cost_per_hour, 6),
        "solver": plan.solver,
        "status": plan.status,
        "solveSeconds": plan.solve_seconds,
        "pools": [
            {"model": p.model, "pool": p.pool, "accelerator": p.accelerator, "replicas": p.replicas,
             "gpus": p.gpus, "costPerHour": round(p.cost_per_hour, 6), "assignedRps": round(p.assigned_rps, 6),
             "busy": round(p.busy, 6)}
            for p in plan.pools
        ],
        "routing": [
            {"model": c[0], "inputBucket": c[1], "outputBucket": c[2], "shares": dict(sorted(s.items()))}
            for c, s in sorted(plan.routing.items())
        ],
        "unknownModels": list(plan.unknown_models),
    }
