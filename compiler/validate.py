"""Pass 2, validate: :class:`SourceDoc` -> :class:`aibrix_spec.InferenceStack`.

Three layers, every problem of all three reported at once:

1. a scan of every text value for inline credentials (secrets only by reference);
2. pydantic, by alias only (strict: unknown fields are errors), restated by :mod:`.messages`;
3. cross-reference rules (DESIGN.md section 3) in :mod:`.crossref`, run when 1-2 passed.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from aibrix_spec import InferenceStack, find_literal_secret

from .crossref import check_references
from .errors import Diagnostic, SpecReferenceError, SpecValidationError
from .messages import diagnostics_from_pydantic
from .parse import SourceDoc

__all__ = ["validate"]

Path = tuple[str | int, ...]


def _secret_scan(node: Any, path: Path, out: list[Diagnostic]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _secret_scan(value, path + (key,), out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _secret_scan(value, path + (i,), out)
    elif isinstance(node, str):
        what = find_literal_secret(node)
        if what is not None:
            out.append(
                Diagnostic(
                    path,
                    f"this value contains {what}",
                    expected="no credentials inline; secrets are accepted only by reference",
                    hint="store the credential in a Kubernetes Secret and name that Secret in a secretRef field",
                )
            )


def validate(doc: SourceDoc) -> InferenceStack:
    """Build the typed stack or raise SpecValidationError / SpecReferenceError with every problem."""
    problems: list[Diagnostic] = []
    _secret_scan(doc.data, (), problems)
    secret_paths = {d.path for d in problems}
    try:
        stack = InferenceStack.model_validate(doc.data, by_alias=True, by_name=False)
    except ValidationError as exc:
        problems += diagnostics_from_pydantic(
            exc, InferenceStack, doc.data, keep=lambda path: path not in secret_paths
        )
        raise SpecValidationError(problems, source_name=doc.source_name) from None
    if problems:
        raise SpecValidationError(problems, source_name=doc.source_name)
    references = check_references(stack)
    if references:
        raise SpecReferenceError(references, source_name=doc.source_name)
    return stack
