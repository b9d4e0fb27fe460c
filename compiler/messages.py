"""Pydantic errors restated in the user's terms (a helper of the validate pass).

Pydantic reports ``loc`` tuples in YAML spelling (we validate by alias only) and error
types such as ``extra_forbidden`` or ``literal_error``. Each type maps to one sentence,
an "expected" line and a hint; unknown fields and unknown values get a "did you mean"
from :func:`difflib.get_close_matches` over the valid names, which are read from the
model class at that path so the hint can never drift from the spec.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import Diagnostic
from .errors import did_you_mean as _did_you_mean

#: "did you mean" hints computed per validation (difflib costs ~0.1 ms each): enough for
#: every error printed, bounded for a file with 20,000 unknown keys.
MAX_SUGGESTIONS = 100


def _no_suggestion(_got: str, _choices: Any) -> str:
    return ""


__all__ = ["diagnostics_from_pydantic", "describe_value"]

Path = tuple[str | int, ...]

_PATTERN_MEANING: dict[str, tuple[str, str]] = {
    # pattern prefix -> (what it is, expected)
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "a valid DNS-1123 label",
        "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
    ),
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.": (
        "a valid Secret name",
        "lowercase letters, digits, '-' and '.', e.g. hf-token",
    ),
    "^[0-9]+(\\.[0-9]+)?(m|k": ("a Kubernetes quantity", "a number with an optional unit, e.g. 16Gi, 512Mi, 2"),
    "^[0-9]+(ms|s|m|h)$": ("a duration", "a whole number with a unit ms, s, m or h, e.g. 30s"),
    "^[a-z0-9./_:@-]+$": ("an image reference", "registry/repository:tag or @sha256:digest, lowercase"),
    "^rediss?://": ("a Redis URL", "redis://host:port/db or rediss://host:port/db"),
    "^https?://": (
        "an HTTP URL",
        "http(s)://host[:port][/path] without user:password@, e.g. http://prometheus.monitoring.svc:9090",
    ),
    "^[A-Za-z0-9]([A-Za-z0-9._/:-]*": (
        "a model name",
        "letters, digits and . _ - / :, starting and ending with a letter or digit, e.g. meta-llama/Llama-3-8B-Instruct",
    ),
    "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?": (
        "a valid label value",
        "at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or empty)",
    ),
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]": (
        "a valid label key",
        "[prefix/]name, e.g. team or example.com/team",
    ),
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[a-z0-9]": (
        "an extended resource name",
        "[domain/]name, e.g. nvidia.com/gpu",
    ),
}


def describe_value(value: Any) -> str:
    """How a YAML reader would name the type of ``value``."""
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f'the text "{value}"' if len(value) <= 60 else f'the text "{value[:57]}..."'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional so the real container or model shows."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


@functools.lru_cache(maxsize=1024)
def _model_at(root: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    return _walk_model(root, path)


def model_at(root: type[BaseModel], path: Iterable[str | int]) -> type[BaseModel] | None:
    """The model class found by following ``path`` (YAML spelling) from ``root``."""
    path = tuple(path)
    try:
        return _model_at(root, path)
    except TypeError:  # an unhashable step cannot be a field name
        return _walk_model(root, path)


def _walk_model(root: type[BaseModel], path: Iterable[str | int]) -> type[BaseModel] | None:
    """The model class found by following ``path`` (YAML spelling) from ``root``."""
    current: Any = root
    for part in path:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {(f.alias or name): f for name, f in current.model_fields.items()}
            field = by_alias.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif origin is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif origin is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _aliases(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _field_description(root: type[BaseModel], path: Path) -> str:
    parent = model_at(root, path[:-1])
    if parent is None or not path:
        return ""
    for name, f in parent.model_fields.items():
        if (f.alias or name) == path[-1]:
            return f.description or ""
    return ""


def _trim(loc: tuple[Any, ...], data: Any) -> tuple[Path, bool]:
    """Cut pydantic's union-branch tags off ``loc``; report whether a tag was cut."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif part == "[key]":
            continue
        else:
            if part != loc[-1] or not isinstance(node, dict):
                return tuple(path), True
            path.append(part)  # a missing or unknown key: keep it
            return tuple(path), False
        path.append(part)
    return tuple(path), False


def _quoted_choices(expected: str) -> tuple[str, ...]:
    return tuple(re.findall(r"'([^']*)'", expected))


def _one(err: dict[str, Any], root: type[BaseModel], path: Path, *, suggest: bool = True) -> Diagnostic:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    did_you_mean = _did_you_mean if suggest else _no_suggestion
    name = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        allowed = _aliases(model_at(root, path[:-1]))
        return Diagnostic(
            path,
            f'unknown field "{name}"',
            expected="one of: " + ", ".join(allowed) if allowed else "no fields here",
            hint=did_you_mean(name, allowed),
        )
    if kind == "missing":
        return Diagnostic(
            path, f'missing required field "{name}"', expected=_field_description(root, path) or f"a value for {name}"
        )
    if kind == "literal_error":
        choices = _quoted_choices(str(ctx.get("expected", "")))
        return Diagnostic(
            path,
            f"{describe_value(value)} is not allowed here",
            expected="one of: " + ", ".join(choices),
            hint=did_you_mean(str(value), choices),
        )
    if kind == "aibrix_spec":
        choices = tuple(ctx.get("choices") or ())
        hint = ctx.get("hint") or ""
        if choices and ctx.get("got"):
            hint = did_you_mean(str(ctx["got"]), choices) or hint
        return Diagnostic(path, err["msg"], expected=ctx.get("expected", ""), hint=hint)
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        for prefix, (what, expected) in _PATTERN_MEANING.items():
            if pattern.startswith(prefix):
                return Diagnostic(path, f"{describe_value(value)} is not {what}", expected=expected, hint=_fix_hint(value, what))
        return Diagnostic(path, f"{describe_value(value)} does not match {pattern}")
    if kind == "finite_number":
        return Diagnostic(path, f"{describe_value(value)} is not a finite number", expected="a finite number")
    if kind == "string_too_long":
        return Diagnostic(path, f"{describe_value(value)} is too long", expected=f"at most {ctx.get('max_length')} characters")
    if kind in ("string_too_short", "too_short"):
        what = "at least 1 item" if kind == "too_short" else "a non-empty text"
        return Diagnostic(path, f"{describe_value(value)} is empty", expected=what)
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "")
        return Diagnostic(path, f"{describe_value(value)} is out of range", expected=f"a number {op} {bound}")
    if kind == "value_error":  # "what was wrong; expected ..." from a spec validator
        message, _, expected = str(err["msg"]).removeprefix("Value error, ").partition("; expected ")
        got = re.search(r'"([^"]+)"', message)
        names = [c.strip() for c in expected.partition("one of:")[2].replace(" or ", ", ").split(",") if c.strip()]
        hint = did_you_mean(got.group(1), names) if got and names else ""
        return Diagnostic(path, message, expected=expected, hint=hint)
    if kind in _TYPE_NAMES:
        return Diagnostic(path, f"wrong type: {describe_value(value)}", expected=_TYPE_NAMES[kind], hint=_type_hint(kind, value))
    return Diagnostic(path, str(err["msg"]))


_TYPE_NAMES: dict[str, str] = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list (- item lines or [a, b])",
}


def _type_hint(kind: str, value: Any) -> str:
    if kind == "string_type" and isinstance(value, (bool, int, float)):
        return "YAML read this as a non-text value; put it in quotes"
    if kind in ("int_type", "int_parsing", "float_type", "float_parsing") and isinstance(value, str):
        return "write the number without quotes or units"
    return ""


def _fix_hint(value: Any, what: str) -> str:
    if what == "a valid DNS-1123 label" and isinstance(value, str):
        fixed = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63].strip("-")
        if fixed and fixed != value:
            return f'did you mean "{fixed}"?'
    return ""


def diagnostics_from_pydantic(
    exc: ValidationError, root: type[BaseModel], data: Any, *, keep: Callable[[Path], bool] = lambda p: True
) -> list[Diagnostic]:
    """One Diagnostic per distinct problem; union branches of one value merge into one."""
    merged: dict[Path, list[dict[str, Any]]] = {}
    for err in exc.errors(include_url=False):
        path, branched = _trim(tuple(err["loc"]), data)
        merged.setdefault(path, []).append(dict(err, branched=branched))
    out: list[Diagnostic] = []
    for path, errs in merged.items():
        if not keep(path):
            continue
        if len(errs) > 1 and all(e["branched"] for e in errs):
            kinds = [_TYPE_NAMES.get(e["type"], e["type"]) for e in errs]
            out.append(
                Diagnostic(
                    path,
                    f"wrong type: {describe_value(errs[0].get('input'))}",
                    expected="one of: " + ", ".join(dict.fromkeys(kinds)),
                )
            )
            continue
        for e in errs:
            out.append(_one(e, root, path, suggest=len(out) < MAX_SUGGESTIONS))
    return list(dict.fromkeys(out))
