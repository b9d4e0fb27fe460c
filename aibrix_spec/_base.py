"""The one base class every spec and component-config model derives from.

YAML fields are camelCase (through an alias generator), Python attributes snake_case.
Models are strict (unknown fields are errors) and frozen (passes hand immutable values on);
numbers must be finite ("inf" and "nan" written as text are refused like YAML's .inf).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["SpecModel"]


class SpecModel(BaseModel):
    """Strict, frozen, camelCase-aliased pydantic model."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
        validate_default=True,
        allow_inf_nan=False,
    )
