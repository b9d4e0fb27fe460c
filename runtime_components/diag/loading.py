"""Load the diag config and fault files from YAML, with errors that point at the line.

`load_model(text, model, source=...)` parses YAML through PyYAML's node graph so every key
and value keeps its line and column, refuses duplicate keys (PyYAML would silently keep the
last), validates with the pydantic model, and turns each pydantic error into a `InputProblem`
(path in YAML spelling, line, column, message, hint). `DiagInputError` carries them all and
renders them in the compiler's format::

    error: faults.yaml:12:21: gpus[0].pcie.currentWidth
      Input should be less than or equal to 32
         12 |     pcie: {currentWidth: 64}
            |                          ^
      hint: ...
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

__all__ = ["DiagInputError", "InputProblem", "load_model", "load_model_file"]

Model = TypeVar("Model", bound=pydantic.BaseModel)
PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class InputProblem:
    path: str
    line: int  #: 1-based; 0 when unknown
    column: int  #: 1-based
    message: str
    hint: str | None = None


class DiagInputError(Exception):
    """A config or fault file that cannot be used; `render()` is what the user sees."""

    def __init__(self, source: str, text: str, problems: list[InputProblem]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)")
        self.source = source
        self.text = text
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))

    def render(self) -> str:
        lines = self.text.splitlines()
        out = []
        for p in self.problems:
            where = f"{self.source}:{p.line}:{p.column}" if p.line else self.source
            out.append(f"error: {where}: {p.path}" if p.path else f"error: {where}")
            out.append(f"  {p.message}")
            if 0 < p.line <= len(lines):
                out.append(f"  {p.line:>5} | {lines[p.line - 1]}")
                out.append(f"  {'':>5} | {' ' * (p.column - 1)}^")
            if p.hint:
                out.append(f"  hint: {p.hint}")
        return "\n".join(out) + "\n"


def load_model_file(path: str | Path, model: type[Model]) -> Model:
    """Read and validate a file; an unreadable file is a `DiagInputError` too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DiagInputError(
            str(path),
            "",
            [
                InputProblem(
                    "",
                    0,
                    0,
                    f"cannot read the file: {error.strerror}",
                    "check the path (--config / --mock / AIBRIX_DIAG_MOCK)",
                )
            ],
        ) from None
    return load_model(text, model, source=str(path))


def load_model(text: str, model: type[Model], *, source: str) -> Model:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise DiagInputError(
            source,
            text,
            [
                InputProblem(
                    "",
                    line,
                    column,
                    f"YAML syntax error: {error.problem}",
                    "check indentation and quoting on this line",
                )
            ],
        ) from None
    if root is None:  # an empty file: every field takes its default
        return _validate(model, {}, {}, source, text)
    positions: dict[PathKey, tuple[int, int]] = {}
    problems: list[InputProblem] = []
    _index(root, (), positions, problems)
    if problems:
        raise DiagInputError(source, text, problems)
    if not isinstance(root, yaml.MappingNode):
        raise DiagInputError(
            source,
            text,
            [
                InputProblem(
                    "",
                    root.start_mark.line + 1,
                    root.start_mark.column + 1,
                    f"expected a mapping of {model.__name__} fields at the top",
                )
            ],
        )
    return _validate(model, yaml.safe_load(text), positions, source, text)


def _validate(
    model: type[Model], data: Any, positions: dict[PathKey, tuple[int, int]], source: str, text: str
) -> Model:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        raise DiagInputError(source, text, [_problem(e, model, positions) for e in error.errors()]) from None


def _index(
    node: yaml.Node, path: PathKey, positions: dict[PathKey, tuple[int, int]], problems: list[InputProblem]
) -> None:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    InputProblem(
                        _render_path((*path, key)),
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        f"duplicate key `{key}`",
                        "keep one; YAML would silently use the last",
                    )
                )
            seen.add(key)
            positions[(*path, key, "__key__")] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _index(value_node, (*path, key), positions, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), positions, problems)


def _render_path(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _problem(error: Any, model: type[pydantic.BaseModel], positions: dict[PathKey, tuple[int, int]]) -> InputProblem:
    loc: PathKey = tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part))
    kind = error["type"]
    if kind == "extra_forbidden":
        line, column = positions.get((*loc, "__key__"), positions.get(loc, (0, 0)))
        known = _field_aliases(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suggestion = f"did you mean `{close[0]}`?" if close else f"known fields: {', '.join(known)}"
        return InputProblem(_render_path(loc), line, column, f"unknown field `{loc[-1]}`", suggestion)
    message = error["msg"].removeprefix("Value error, ")
    # A model-level rule may name a deeper path at the start of its message ("gpus[0].index 4 ...").
    named = _PATH_AT_START.match(message)
    if named:
        deeper = _parse_path(named.group(1), loc)
        if deeper in positions:
            loc = deeper
    # Walk up to the nearest path the YAML has (a missing field points at its parent mapping).
    probe = loc
    while probe and probe not in positions:
        probe = probe[:-1]
    line, column = positions.get(probe, (0, 0))
    hint: str | None = None
    if kind == "missing":
        message = f"missing required field `{loc[-1]}`"
    elif kind == "literal_error":
        message = f"`{error.get('input')}` is not allowed here"
        hint = f"expected one of: {error.get('ctx', {}).get('expected', '')}"
    return InputProblem(_render_path(loc), line, column, message, hint)


_PATH_AT_START = re.compile(r"^([A-Za-z]\w*(?:\[\d+\]|\.[A-Za-z]\w*)*)[ :]")


def _parse_path(text: str, base: PathKey) -> PathKey:
    parts: list[str | int] = list(base)
    for name, index in re.findall(r"\.?([A-Za-z]\w*)|\[(\d+)\]", text):
        parts.append(name if name else int(index))
    return tuple(parts)


def _field_aliases(model: type[pydantic.BaseModel], loc: PathKey) -> list[str]:
    """The YAML field names valid at `loc` (for "did you mean")."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            field = next((f for name, f in current.model_fields.items() if part in (name, f.alias)), None)
            current = field.annotation if field else None
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return options[0] if len(options) == 1 else annotation
    return annotation
