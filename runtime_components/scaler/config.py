"""Loading the scaler's config file (the ConfigMap's `scaler.yaml`) into `ScalerConfig`.

Where it sits: ``aibrix-scaler --config`` and the local runner call ``load_config``; the
parsing is the shared loader's (``runtime_components.common.config_file``), so every
problem becomes one `ConfigError` whose text names the file, line and column, the field
path in the YAML's own spelling (camelCase), what was wrong and what was expected, e.g.

    error: scaler.yaml:5:14: targets[0].metric.aggregation
      missing required field `aggregation`
          5 |     metric: {name: 'vllm:num_requests_running', source: engine}
            |             ^
      hint: expected per-pod or total
"""

from __future__ import annotations

from pathlib import Path

from aibrix_spec.components.scaler import ScalerConfig
from runtime_components.common.config_file import ConfigFileError, load_model, load_model_file

__all__ = ["ConfigError", "load_config", "parse_config"]

# What a field expects, for the messages (keys are the field's YAML name).
EXPECTED = {
    "aggregation": "expected per-pod or total",
    "source": "expected engine or optimizer",
    "policy": "expected hpa, kpa or apa",
    "kind": "expected Deployment or StatefulSet",
}
READ_HINT = "pass the mounted ConfigMap file, e.g. --config /etc/aibrix-scaler/scaler.yaml"
TOP_HINT = "the file needs `targets:` (a list of scaling targets) at the top"


class ConfigError(Exception):
    """A config file the scaler cannot use; `str()` is the full user-facing message."""


def load_config(path: Path) -> ScalerConfig:
    """Read and validate `path`; raises ConfigError with a readable message."""
    try:
        return load_model_file(path, ScalerConfig, read_hint=READ_HINT, top_hint=TOP_HINT, field_hints=EXPECTED)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from None


def parse_config(text: str, *, source: str) -> ScalerConfig:
    """Validate YAML `text`; `source` names it in messages."""
    try:
        return load_model(text, ScalerConfig, source=source, top_hint=TOP_HINT, field_hints=EXPECTED)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from None
