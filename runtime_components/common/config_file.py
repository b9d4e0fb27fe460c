"""Load a component's YAML config file into its pydantic model, with errors that point at the line.

Where it sits: every runtime component that reads a config or fault file (gateway, scaler,
kv pool, sidecar, diag, the engine simulator's GPU-fault file, the optimizer) loads it
through ``load_model_file`` / ``load_model``, so all of them report problems the same way.

``load_model(text, model, source=...)`` parses YAML through PyYAML's node graph so every key
and value keeps its line and column, refuses duplicate keys (PyYAML would silently keep the
last), validates with the pydantic model, and turns each pydantic error into an
``InputProblem`` (path in YAML spelling, line, column, message, hint: "did you mean" for a
misspelt field, the allowed values for a literal). ``ConfigFileError`` carries them all;
``render()`` (also its ``str()``) is what the user sees, in the compiler's format::

    error: faults.yaml:12:21: gpus[0].pcie.currentWidth
      Input should be less than or equal to 32
         12 |     pcie: {currentWidth: 64}
            |                          ^
      hint: ...
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

__all__ = ["ConfigFileError", "InputProblem", "load_model", "load_model_file", "parse_yaml", "read_yaml_file"]

Model = TypeVar("Model", bound=pydantic.BaseModel)
PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class InputProblem:
    path: str
    line: int  #: 1-based; 0 when unknown
    column: int  #: 1-based
    message: str
    hint: str | None = None


class ConfigFileError(ValueError):
    """A config file that cannot be used; ``render()`` (and ``str()``) is what the user sees."""

    def __init__(self, source: str, text: str, problems: list[InputProblem]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)")
        self.source = source
        self.text = text
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))

    def __str__(self) -> str:
        return self.render().rstrip("\n")

    def render(self) -> str:
        lines = self.text.splitlines()
        out = []
        for p in self.problems:
            where = f"{self.source}:{p.line}:{p.column}" if p.line else self.source
            out.append(f"error: {where}: {p.path}" if p.path else f"error: {where}")
            out.append(f"  {p.message}")
            if 0 < p.line <= len(lines):
                shown, caret = _window(lines[p.line - 1], p.column)
                out.append(f"  {p.line:>5} | {shown}")
                out.append(f"  {'':>5} | {' ' * caret}^")
            if p.hint:
                out.append(f"  hint: {p.hint}")
        return "\n".join(out) + "\n"


SHOWN_LINE_CHARS = 100  # a longer line (one-line JSON) is shown as a window around the column


def _window(line: str, column: int) -> tuple[str, int]:
    """The part of ``line`` to show around 1-based ``column``, and the caret's offset in it."""
    if len(line) <= SHOWN_LINE_CHARS:
        return line, column - 1
    start = max(0, min(column - 1 - SHOWN_LINE_CHARS // 2, len(line) - SHOWN_LINE_CHARS))
    shown = line[start:start + SHOWN_LINE_CHARS]
    head = "..." if start > 0 else ""
    tail = "..." if start + SHOWN_LINE_CHARS < len(line) else ""
    return head + shown + tail, len(head) + column - 1 - start


def load_model_file(
    path: str | Path,
    model: type[Model],
    *,
    read_hint: str = "check the path",
    top_hint: str | None = None,
    field_hints: Mapping[str, str] | None = None,
) -> Model:
    """Read and validate a file; an unreadable file is a ``ConfigFileError`` too (with ``read_hint``)."""
    text = _read(path, read_hint)
    return load_model(text, model, source=str(path), top_hint=top_hint, field_hints=field_hints)


def load_model(
    text: str,
    model: type[Model],
    *,
    source: str,
    top_hint: str | None = None,
    field_hints: Mapping[str, str] | None = None,
) -> Model:
    """Parse ``text`` (YAML) and validate it as ``model``.

    ``top_hint`` explains what belongs at the top when the document is not a mapping;
    ``field_hints`` maps a field's YAML name to a hint for any problem at that field that
    has none of its own (e.g. ``{"policy": "expected hpa, kpa or apa"}``).
    """
    root, positions = _compose(text, source)
    if root is None:  # an empty file: every field takes its default
        return _validate(model, {}, {}, source, text, field_hints)
    if not isinstance(root, yaml.MappingNode):
        top = InputProblem(
            "",
            root.start_mark.line + 1,
            root.start_mark.column + 1,
            f"expected a mapping of {model.__name__} fields at the top",
            top_hint,
        )
        raise ConfigFileError(source, text, [top])
    return _validate(model, yaml.safe_load(text), positions, source, text, field_hints)


def parse_yaml(text: str, *, source: str) -> Any:
    """YAML text as plain data (None when empty) for a file checked by hand, not by a model.

    Syntax errors and duplicate keys are ``ConfigFileError`` with their line, as in ``load_model``.
    """
    root, _ = _compose(text, source)
    return None if root is None else yaml.safe_load(text)


def read_yaml_file(path: str | Path, *, read_hint: str = "check the path") -> Any:
    """``parse_yaml`` of a file; an unreadable file is a ``ConfigFileError`` (with ``read_hint``)."""
    return parse_yaml(_read(path, read_hint), source=str(path))


def _read(path: str | Path, read_hint: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ConfigFileError(str(path), "", [InputProblem("", 0, 0, f"cannot read the file: {reason}", read_hint)]) from None


def _compose(text: str, source: str) -> tuple[yaml.Node | None, dict[PathKey, tuple[int, int]]]:
    """The YAML node graph and each path's (line, column); syntax errors and duplicate keys raise."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:  # marked (syntax) errors, and reader errors such as control characters
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = getattr(error, "problem", None) or str(error)
        kind = "JSON" if source.lower().endswith(".json") else "YAML"  # JSON is parsed as the YAML it is
        syntax = InputProblem("", line, column, f"{kind} syntax error: {problem}", "check indentation and quoting on this line")
        raise ConfigFileError(source, text, [syntax]) from None
    positions: dict[PathKey, tuple[int, int]] = {}
    if root is None:
        return None, positions
    problems: list[InputProblem] = []
    _index(root, (), positions, problems)
    if problems:
        raise ConfigFileError(source, text, problems)
    return root, positions


def _validate(
    model: type[Model],
    data: Any,
    positions: dict[PathKey, tuple[int, int]],
    source: str,
    text: str,
    field_hints: Mapping[str, str] | None,
) -> Model:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        problems = [_with_field_hint(_problem(e, model, positions), e, field_hints) for e in error.errors()]
        raise ConfigFileError(source, text, problems) from None


def _with_field_hint(problem: InputProblem, error: Any, field_hints: Mapping[str, str] | None) -> InputProblem:
    """Add the component's hint for the field pydantic blames (not a field a message names)."""
    if problem.hint or not field_hints:
        return problem
    names = [part for part in error["loc"] if isinstance(part, str) and "[" not in part]
    hint = field_hints.get(names[-1]) if names else None
    return dataclasses.replace(problem, hint=hint) if hint else problem


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
        # The path may be relative to where the rule lives, or to any model above it.
        for depth in range(len(loc), -1, -1):
            deeper = _parse_path(named.group(1), loc[:depth])
            if deeper in positions:
                loc = deeper
                break
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
