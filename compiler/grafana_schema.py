"""A minimal JSON Schema of the Grafana dashboard fields this compiler emits, plus the rules a
schema cannot say (unique panel ids and refIds, panels inside the 24-column grid and not
overlapping, every target naming a datasource the dashboard defines).

Written from Grafana's dashboard JSON model (schemaVersion 39: ``uid``, ``title``, ``panels``
with ``gridPos``, ``targets`` with ``refId`` and ``expr``, ``templating.list``), narrowed to
what we write: ``additionalProperties: false`` everywhere, so a field we start emitting must be
added here on purpose.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DASHBOARD_SCHEMA", "dashboard_problems"]

_DATASOURCE: dict[str, Any] = {
    "type": "object",
    "required": ["type", "uid"],
    "additionalProperties": False,
    "properties": {"type": {"const": "prometheus"}, "uid": {"type": "string", "minLength": 1}},
}

_TARGET: dict[str, Any] = {
    "type": "object",
    "required": ["refId", "expr", "legendFormat", "datasource"],
    "additionalProperties": False,
    "properties": {
        "refId": {"type": "string", "pattern": "^[A-Z]+$"},
        "expr": {"type": "string", "minLength": 1},
        "legendFormat": {"type": "string"},
        "datasource": _DATASOURCE,
    },
}

_PANEL: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "datasource", "targets", "fieldConfig"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["timeseries", "stat"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "gridPos": {
            "type": "object",
            "required": ["h", "w", "x", "y"],
            "additionalProperties": False,
            "properties": {
                "h": {"type": "integer", "minimum": 1},
                "w": {"type": "integer", "minimum": 1, "maximum": 24},
                "x": {"type": "integer", "minimum": 0, "maximum": 23},
                "y": {"type": "integer", "minimum": 0},
            },
        },
        "datasource": _DATASOURCE,
        "fieldConfig": {
            "type": "object",
            "required": ["defaults", "overrides"],
            "additionalProperties": False,
            "properties": {
                "defaults": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"unit": {"type": "string", "minLength": 1}},
                },
                "overrides": {"type": "array", "maxItems": 0},
            },
        },
        "targets": {"type": "array", "minItems": 1, "items": _TARGET},
    },
}

#: The dashboard document (the JSON in each ConfigMap).
DASHBOARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "additionalProperties": False,
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "timezone": {"enum": ["browser", "utc", ""]},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "version": {"type": "integer", "minimum": 0},
        "editable": {"type": "boolean"},
        "refresh": {"type": "string", "pattern": "^[0-9]+[smhd]$"},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "additionalProperties": False,
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "annotations": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"list": {"type": "array", "maxItems": 0}},
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "additionalProperties": False,
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type", "query"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                            "label": {"type": "string"},
                            "type": {"const": "datasource"},
                            "query": {"const": "prometheus"},
                            "hide": {"enum": [0, 1, 2]},
                        },
                    },
                }
            },
        },
        "panels": {"type": "array", "minItems": 1, "items": _PANEL},
    },
}


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def dashboard_problems(doc: Any) -> list[str]:
    """Every problem of ``doc`` as a Grafana dashboard we emit (empty = valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(DASHBOARD_SCHEMA)
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        return problems
    variables = {f"${{{v['name']}}}" for v in doc["templating"]["list"]}
    ids = [p["id"] for p in doc["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"panels: duplicate ids {sorted(i for i in ids if ids.count(i) > 1)}")
    for i, panel in enumerate(doc["panels"]):
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"panels/{i}: gridPos reaches column {grid['x'] + grid['w']} (the grid has 24)")
        for j, other in enumerate(doc["panels"][:i]):
            if _overlap(grid, other["gridPos"]):
                problems.append(f"panels/{i}: overlaps panels/{j}")
        refs = [t["refId"] for t in panel["targets"]]
        if len(refs) != len(set(refs)):
            problems.append(f"panels/{i}: duplicate refIds")
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            if source["uid"].startswith("$") and source["uid"] not in variables:
                problems.append(f"panels/{i}: datasource {source['uid']} is not a dashboard variable")
    return problems
