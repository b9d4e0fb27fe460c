"""Loads the gateway's config file (YAML) into ``GatewayConfig`` with readable errors.

Every problem becomes one :class:`ConfigError` whose message names the file, the field
path in YAML spelling (camelCase), what was wrong and what was expected, e.g.::

    gateway.yaml: models[0].routing.policy: unknown routing policy "fastest"; expected one of: random, ...
"""

from __future__ import annotations

import difflib

import yaml
from pydantic import ValidationError

from aibrix_spec.components.gateway import GatewayConfig

__all__ = ["ConfigError", "load_config", "parse_config"]


class ConfigError(ValueError):
    """The gateway config cannot be used; ``str()`` is the message for the user."""


def _path(loc: tuple[object, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(error: dict[str, object], data: object) -> str:
    loc = tuple(error.get("loc", ()))  # type: ignore[arg-type]
    kind = error.get("type")
    if kind == "extra_forbidden" and loc:
        parent: object = data
        for part in loc[:-1]:
            try:
                parent = parent[part]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        known = list(_known_fields(loc[:-1]))
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else (f"; expected one of: {', '.join(known)}" if known else "")
        return f"{_path(loc)}: unknown field{hint}"
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    return f"{_path(loc)}: {message}"


def _known_fields(loc: tuple[object, ...]) -> list[str]:
    """camelCase field names of the model found at ``loc`` (best effort, for hints)."""
    model: object = GatewayConfig
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        match = next((f for name, f in fields.items() if (f.alias or name) == part), None)
        if match is None:
            return []
        annotation = match.annotation
        inner = getattr(annotation, "__args__", None)
        model = next((a for a in inner if hasattr(a, "model_fields")), annotation) if inner else annotation
    fields = getattr(model, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]


def parse_config(text: str, source: str) -> GatewayConfig:
    """Parse YAML text into a GatewayConfig; raise ConfigError naming ``source``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with at least `models`; see docs/gateway.md for the format")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_explain(dict(e), data)}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str) -> GatewayConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the gateway config ({exc.strerror}); pass --config FILE") from None
    return parse_config(text, path)
