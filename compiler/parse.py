"""Pass 1, parse: text -> :class:`SourceDoc` (plain data plus a source map).

The YAML is composed into nodes (which carry positions) and built into plain Python data
by walking those nodes, so every value's path maps to the line and column where it was
written. Keys are mapped separately from values: "unknown field" points at the key,
"wrong value" at the value. Duplicate keys, several documents and non-mapping roots are
syntax errors (PyYAML alone would silently keep the last duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, SpecSyntaxError

__all__ = ["Position", "SourceDoc", "parse"]

Position = tuple[int, int]  # 1-based line, column
PathKey = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class SourceDoc:
    """Parsed input: the data and where each part of it was written."""

    data: dict[str, Any]
    text: str
    source_name: str
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)

    def is_container(self, path: PathKey) -> bool:
        """Whether the value written at ``path`` is a mapping or a list."""
        node: Any = self.data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return False
        return isinstance(node, (dict, list))

    def position(self, path: PathKey, *, prefer_key: bool = False) -> Position:
        """Where ``path`` was written; falls back to the closest written ancestor."""
        for cut in range(len(path), -1, -1):
            head = path[:cut]
            table = (self.keys, self.values) if prefer_key or cut < len(path) else (self.values, self.keys)
            for positions in table:
                if head in positions:
                    return positions[head]
        return (1, 1)


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Builds plain data from composed nodes while recording positions."""

    def __init__(self) -> None:
        self.values: dict[PathKey, Position] = {}
        self.keys: dict[PathKey, Position] = {}
        self.errors: list[Diagnostic] = []
        self._scalars = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.values.setdefault(path, _mark(node))
        if id(node) in self._active:  # an alias that refers to its own ancestor
            self.errors.append(
                Diagnostic(path, "a recursive YAML alias", expected="a finite document", hint="remove the alias").at(
                    *_mark(node)
                )
            )
            return None
        if isinstance(node, yaml.MappingNode):
            self._active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self._active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self._active.add(id(node))
            try:
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            finally:
                self._active.discard(id(node))
        try:
            return self._scalars.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.errors.append(
                Diagnostic(path, f"cannot read this value: {problem}", hint="quote it to make it plain text").at(*_mark(node))
            )
        except (ValueError, OverflowError) as exc:  # e.g. 2024-13-45 looks like a date but is none
            self.errors.append(
                Diagnostic(path, f"cannot read this value: {exc}", hint="quote it to make it plain text").at(*_mark(node))
            )
        return None

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.errors.append(
                    Diagnostic(path, "YAML merge keys (<<) are not supported", hint="write the fields out").at(
                        *_mark(key_node)
                    )
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.append(
                    Diagnostic(path, "a key is a list or mapping", expected="plain field names").at(*_mark(key_node))
                )
                continue
            key = str(key_node.value)  # field names are text; 1: or true: stay as written
            child = path + (key,)
            if key in out:
                first = self.keys[child]
                self.errors.append(
                    Diagnostic(
                        child,
                        f'duplicate key "{key}" (first written on line {first[0]})',
                        hint="keep one of them",
                    ).at(*_mark(key_node))
                )
                continue
            self.keys[child] = _mark(key_node)
            out[key] = self.build(value_node, child)
        return out


def parse(text: str, *, source_name: str) -> SourceDoc:
    """Parse one InferenceStack document; raise :class:`SpecSyntaxError` with positions."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise SpecSyntaxError(
            [Diagnostic((), f"invalid YAML: {problem}{context}", hint="check indentation and quoting").at(line, col)],
            source_name=source_name,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecSyntaxError([Diagnostic((), f"invalid YAML: {exc}").at(1, 1)], source_name=source_name) from None
    docs = [n for n in nodes if n is not None]
    if not docs:
        raise SpecSyntaxError(
            [Diagnostic((), "the file is empty", expected="one InferenceStack document").at(1, 1)],
            source_name=source_name,
        )
    if len(docs) > 1:
        raise SpecSyntaxError(
            [
                Diagnostic(
                    (),
                    f"the file holds {len(docs)} YAML documents",
                    expected="one InferenceStack document per file",
                    hint="split the stacks into separate files",
                ).at(*_mark(docs[1]))
            ],
            source_name=source_name,
        )
    root = docs[0]
    if not isinstance(root, yaml.MappingNode):
        raise SpecSyntaxError(
            [Diagnostic((), "the document is not a mapping", expected="apiVersion, kind, metadata, spec").at(*_mark(root))],
            source_name=source_name,
        )
    builder = _Builder()
    data = builder.build(root, ())
    if builder.errors:
        raise SpecSyntaxError(builder.errors, source_name=source_name)
    return SourceDoc(data=data, text=text, source_name=source_name, values=builder.values, keys=builder.keys)
