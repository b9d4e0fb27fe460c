"""Reading the optimizer's input files (config, profiles, workload) with clear errors.

JSON and YAML are both accepted (YAML is a superset of JSON). Pydantic errors are restated
as ``field.path: message`` lines using the file's camelCase spelling, so a user can find the
offending field without reading a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from runtime_components.optimizer.errors import InputFileError

__all__ = ["read_document", "load_model", "validation_lines"]

M = TypeVar("M", bound=BaseModel)


def read_document(path: str | Path) -> Any:
    """Parse a JSON or YAML file into plain data."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(str(p), "file not found", hint="check the path") from None
    except OSError as exc:
        raise InputFileError(str(p), f"cannot read file: {exc.strerror}") from None
    try:
        if p.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputFileError(str(p), f"not valid {'JSON' if p.suffix == '.json' else 'YAML/JSON'}: {exc}") from None


def validation_lines(error: ValidationError) -> list[str]:
    """One ``loc: message`` line per pydantic error, with YAML (alias) spelling."""
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {message}")
    return lines


def load_model(path: str | Path, model: type[M], *, what: str) -> M:
    """Read ``path`` and validate it as ``model``; every problem becomes one InputFileError."""
    data = read_document(path)
    if not isinstance(data, dict):
        raise InputFileError(str(path), f"expected a {what} (a mapping), got {type(data).__name__}",
                             hint="see docs/optimizer.md for the file format")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(
            str(path),
            f"invalid {what}:\n    " + "\n    ".join(validation_lines(exc)),
            hint="see docs/optimizer.md for the file format",
        ) from None
