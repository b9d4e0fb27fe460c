"""Reading the optimizer's input files (config, profiles, workload) with clear errors.

JSON and YAML are both accepted (YAML is a superset of JSON). Parsing and validation are
the shared loader's (``runtime_components.common.config_file``): each problem names the
file, line and column, and the field in the file's camelCase spelling, and shows the line,
so a user can find the offending field without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from runtime_components.common.config_file import ConfigFileError, load_model_file, read_yaml_file
from runtime_components.optimizer.errors import InputFileError

__all__ = ["read_document", "load_model"]

M = TypeVar("M", bound=BaseModel)

FORMAT_HINT = "see docs/optimizer.md for the file format"


def _input_error(path: str | Path, error: ConfigFileError) -> InputFileError:
    return InputFileError.rendered(str(path), str(error).removeprefix("error: "))


def read_document(path: str | Path) -> Any:
    """Parse a JSON or YAML file into plain data."""
    try:
        return read_yaml_file(path, read_hint="check the path")
    except ConfigFileError as exc:
        raise _input_error(path, exc) from None


def load_model(path: str | Path, model: type[M], *, what: str) -> M:
    """Read ``path`` and validate it as ``model`` (a ``what``); every problem becomes one InputFileError."""
    try:
        return load_model_file(path, model, read_hint="check the path", top_hint=f"a {what} is a mapping; {FORMAT_HINT}")
    except ConfigFileError as exc:
        raise _input_error(path, exc) from None
