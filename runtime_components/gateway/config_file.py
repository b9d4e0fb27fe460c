"""Loads the gateway's config file (YAML) into ``GatewayConfig`` with readable errors.

Where it sits: ``aibrix-gateway --config`` calls ``load_config``. The parsing is the shared
loader's (``runtime_components.common.config_file``), so every problem names the file, line
and column, the field path in YAML spelling (camelCase), what was wrong and what was
expected, and shows the line, e.g.::

    error: gateway.yaml:3:32: models[0].routing.policy
      unknown routing policy "fastest"; expected one of: random, ...
          3 |   - {name: m, routing: {policy: fastest}}
            |                                 ^
"""

from __future__ import annotations

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.common.config_file import ConfigFileError, load_model, load_model_file

__all__ = ["ConfigError", "load_config", "parse_config"]

READ_HINT = "pass --config FILE (the gateway ConfigMap's gateway.yaml)"
TOP_HINT = "the file needs at least `models:` at the top; see docs/gateway.md for the format"


class ConfigError(ValueError):
    """The gateway config cannot be used; ``str()`` is the message for the user."""


def parse_config(text: str, source: str) -> GatewayConfig:
    """Parse YAML text into a GatewayConfig; raise ConfigError naming ``source``."""
    try:
        return load_model(text, GatewayConfig, source=source, top_hint=TOP_HINT)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: str) -> GatewayConfig:
    try:
        return load_model_file(path, GatewayConfig, read_hint=READ_HINT, top_hint=TOP_HINT)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
