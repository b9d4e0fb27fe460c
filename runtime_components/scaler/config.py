"""Loading the scaler's config file (the ConfigMap's `scaler.yaml`) into `ScalerConfig`.

Every problem becomes one `ConfigError` whose text names the file, the field path in the
YAML's own spelling (camelCase), what was wrong and what was expected, e.g.

    error: scaler.yaml: targets[0].metric.aggregation: field required
      expected: per-pod or total
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aibrix_spec.components.scaler import ScalerConfig

__all__ = ["ConfigError", "load_config", "parse_config"]

# What a field expects, for the messages (keys are the last path element).
EXPECTED = {
    "aggregation": "per-pod or total",
    "source": "engine or optimizer",
    "policy": "hpa, kpa or apa",
    "kind": "Deployment or StatefulSet",
}


class ConfigError(Exception):
    """A config file the scaler cannot use; `str()` is the full user-facing message."""


def load_config(path: Path) -> ScalerConfig:
    """Read and validate `path`; raises ConfigError with a readable message."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"error: cannot read config {path}: {error.strerror or error}\n"
                          "  hint: pass the mounted ConfigMap file, e.g. --config /etc/aibrix-scaler/scaler.yaml")
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str) -> ScalerConfig:
    """Validate YAML `text`; `source` names it in messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"error: {where}: invalid YAML: {problem}")
    if not isinstance(data, dict):
        raise ConfigError(f"error: {source}: expected a mapping with `targets:` at the top, "
                          f"got {type(data).__name__}")
    try:
        return ScalerConfig.model_validate(data)
    except ValidationError as error:
        lines = [_describe(source, e) for e in error.errors()]
        raise ConfigError("\n".join(lines)) from None


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(source: str, error: Any) -> str:
    loc = tuple(error["loc"])
    path = _path(loc)
    kind = error["type"]
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    where = f"{source}: {path}" if loc else source
    line = f"error: {where}: {message[0].lower() + message[1:]}"
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        line = f"error: {source}: {path}: unknown field `{last}`"
        known = _known_fields(loc[:-1])
        close = difflib.get_close_matches(last, known, n=1)
        if close:
            line += f"\n  hint: did you mean `{close[0]}`?"
        elif known:
            line += f"\n  expected one of: {', '.join(sorted(known))}"
    elif last in EXPECTED:
        line += f"\n  expected: {EXPECTED[last]}"
    return line


def _known_fields(parent: tuple[Any, ...]) -> list[str]:
    """camelCase field names of the model at `parent` (walks the pydantic model tree)."""
    model: Any = ScalerConfig
    for part in parent:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        field = fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if hasattr(c, "model_fields")), None)
        if model is None:
            return []
    return [f.alias or n for n, f in model.model_fields.items()]
