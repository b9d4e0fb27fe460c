"""Load the diag config and fault files from YAML, with errors that point at the line.

Where it sits: ``aibrix-diag`` (``cli.py``), the periodic exporter and the benchmark read
``DiagConfig`` and ``FaultFile`` through here. The loader itself is the one every component
shares (``runtime_components.common.config_file``: file:line:col, duplicate keys, did-you-mean);
this module only adds the diag CLI's hint for a file that cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pydantic

from runtime_components.common.config_file import ConfigFileError, InputProblem, load_model
from runtime_components.common.config_file import load_model_file as _load_model_file

__all__ = ["DiagInputError", "InputProblem", "load_model", "load_model_file"]

Model = TypeVar("Model", bound=pydantic.BaseModel)

DiagInputError = ConfigFileError  #: the diag name of the shared loader's error

READ_HINT = "check the path (--config / --mock / AIBRIX_DIAG_MOCK)"


def load_model_file(path: str | Path, model: type[Model]) -> Model:
    """Read and validate a diag config or fault file; any problem is a ``DiagInputError``."""
    return _load_model_file(path, model, read_hint=READ_HINT)
