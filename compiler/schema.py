"""The JSON Schema of InferenceStack, as committed in ``schemas/inferencestack.schema.json``.

Generated from :mod:`aibrix_spec` (pydantic, by alias), so field descriptions become
editor tooltips through the yaml-language-server modeline at the top of each example.
Output is canonical: sorted keys, two-space indent, trailing newline.
"""

from __future__ import annotations

import json
from typing import Any

from aibrix_spec import InferenceStack

__all__ = ["SCHEMA_ID", "schema_text", "stack_schema"]

SCHEMA_ID = "https://aibrix.ai/schemas/inferencestack.schema.json"


def stack_schema() -> dict[str, Any]:
    schema = InferenceStack.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(stack_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
