"""Pass 1, parse: text -> :class:`SourceDoc` (plain data plus a source map).

The YAML is composed into nodes (which carry positions) and built into plain Python data
by walking those nodes, so every value's path maps to the line and column where it was
written. Keys are mapped separately from values: "unknown field" points at the key,
"wrong value" at the value. Duplicate keys, several documents and non-mapping roots are
syntax errors (PyYAML alone would silently keep the last duplicate).

The input is untrusted (an ArgoCD repo-server compiles whatever is pushed), so the nodes
are composed here from libyaml's event stream, iteratively, under the bounds of
:mod:`.limits`: size, nesting depth (checked before libyaml's own recursive composer could
overflow the C stack) and the number of values the document builds once aliases are
expanded (a "billion laughs" document is refused at the alias that crosses the bound).
Plain scalars are read by :mod:`.scalars` (YAML 1.2 core schema; values YAML 1.1 reads
differently are refused); tags other than ``!!str``, ``!!map`` and ``!!seq`` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, SpecSyntaxError
from .limits import MAX_BYTES, MAX_DEPTH, MAX_VALUES
from .scalars import ScalarProblem, read_plain

__all__ = ["Position", "SourceDoc", "decode", "parse"]

Position = tuple[int, int]  # 1-based line, column
PathKey = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_ALLOWED_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


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


def _event_mark(event: yaml.Event) -> Position:
    mark = event.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _fail(
    message: str, at: Position, source_name: str, *, expected: str = "", hint: str = "", path: PathKey = ()
) -> SpecSyntaxError:
    return SpecSyntaxError([Diagnostic(path, message, expected=expected, hint=hint).at(*at)], source_name=source_name)


def _show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _line_col(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def decode(data: bytes, *, source_name: str) -> str:
    """The text of a stack file: UTF-8 (an optional BOM is dropped) and at most MAX_BYTES.

    Raises :class:`SpecSyntaxError` (an invalid stack, exit 1) naming the line of the
    first byte that is not UTF-8, or of the byte where the size limit is crossed.
    """
    if len(data) > MAX_BYTES:
        head = data[:MAX_BYTES].decode("utf-8", "replace")
        raise _fail(
            f"the file is larger than {MAX_BYTES / (1 << 20):g} MiB",
            _line_col(head, len(head)),
            source_name,
            expected=f"a stack file of at most {MAX_BYTES} bytes",
            hint="split the stack into several files, one per environment",
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data[: exc.start].decode("utf-8", "replace"), len(data[: exc.start].decode("utf-8", "replace")))
        raise _fail(
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            (line, col),
            source_name,
            expected="a UTF-8 encoded YAML file",
            hint="save the file as UTF-8",
        ) from None


@dataclass
class _Open:
    """A mapping or list being composed: its node, children and expanded size so far."""

    node: yaml.CollectionNode
    anchor: str | None
    items: list[Any] = field(default_factory=list)
    size: int = 1

    def next_key(self) -> tuple[str | int, ...]:
        """The path step to the next value written inside this collection."""
        if isinstance(self.node, yaml.SequenceNode):
            return (len(self.items),)
        if len(self.items) % 2 == 1 and isinstance(self.items[-1], yaml.ScalarNode):
            return (str(self.items[-1].value),)
        return ()


def _path(stack: list[_Open]) -> PathKey:
    """Where the next value goes; computed only for an error (it costs a walk of the stack)."""
    return tuple(step for frame in stack for step in frame.next_key())


class _Composer:
    """Nodes from libyaml's events, without recursion and within the limits."""

    def __init__(self, source_name: str) -> None:
        self.source_name = source_name
        self.anchors: dict[str, tuple[yaml.Node, int] | None] = {}  # None: still open
        self.expanded = 0  # values built so far, aliases expanded

    def _count(self, n: int, at: Position, stack: list[_Open], *, alias: bool = False) -> None:
        self.expanded += n
        if self.expanded > MAX_VALUES:
            raise _fail(
                f"the document builds more than {MAX_VALUES} values",
                at,
                self.source_name,
                path=_path(stack),
                expected=f"at most {MAX_VALUES} values (mappings, lists and scalars) once YAML aliases are expanded",
                hint=(
                    "each alias (*name) copies its anchor's whole value; write the values out or use fewer aliases"
                    if alias
                    else "split the stack into several files, one per environment"
                ),
            )

    def compose(self, events: Any) -> list[yaml.Node]:
        documents: list[yaml.Node] = []
        stack: list[_Open] = []
        root: yaml.Node | None = None
        for event in events:
            if isinstance(event, yaml.DocumentStartEvent):
                self.anchors, root = {}, None
                continue
            if isinstance(event, yaml.DocumentEndEvent):
                if root is not None:
                    documents.append(root)
                continue
            if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent)):
                continue
            done: tuple[yaml.Node, int] | None = None
            if isinstance(event, yaml.AliasEvent):
                target = self.anchors.get(event.anchor, ...)  # type: ignore[arg-type]
                if target is ...:
                    raise _fail(f'the YAML alias *{event.anchor} names no anchor', _event_mark(event), self.source_name,
                                hint=f"define &{event.anchor} before using it")
                if target is None:
                    raise _fail("a recursive YAML alias", _event_mark(event), self.source_name,
                                expected="a finite document", hint="remove the alias")
                self._count(target[1], _event_mark(event), stack, alias=True)
                done = target
            elif isinstance(event, yaml.ScalarEvent):
                self._count(1, _event_mark(event), stack)
                start: Any = event.start_mark  # libyaml's Mark type quacks like PyYAML's
                end: Any = event.end_mark
                node = yaml.ScalarNode(event.tag or "", event.value, start, end, style=event.style)
                done = (node, 1)
                if event.anchor is not None:
                    self.anchors[event.anchor] = done
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise _fail(
                        f"the document nests deeper than {MAX_DEPTH} levels",
                        _event_mark(event),
                        self.source_name,
                        expected=f"at most {MAX_DEPTH} levels of nested mappings and lists",
                        hint="an InferenceStack needs about 7; check for runaway indentation or brackets",
                        path=_path(stack),
                    )
                self._count(1, _event_mark(event), stack)
                kind = yaml.MappingNode if isinstance(event, yaml.MappingStartEvent) else yaml.SequenceNode
                start = event.start_mark
                collection = kind(event.tag or "", [], start, None, flow_style=event.flow_style)
                stack.append(_Open(collection, event.anchor))
                if event.anchor is not None:
                    self.anchors[event.anchor] = None
                continue
            else:  # MappingEndEvent / SequenceEndEvent
                top = stack.pop()
                top.node.end_mark = event.end_mark
                if isinstance(top.node, yaml.MappingNode):
                    top.node.value = list(zip(top.items[0::2], top.items[1::2]))
                else:
                    top.node.value = top.items
                done = (top.node, top.size)
                if top.anchor is not None:
                    self.anchors[top.anchor] = done
            if stack:
                stack[-1].items.append(done[0])
                stack[-1].size += done[1]
            else:
                root = done[0]
        return documents


class _Builder:
    """Builds plain data from composed nodes while recording positions."""

    def __init__(self) -> None:
        self.values: dict[PathKey, Position] = {}
        self.keys: dict[PathKey, Position] = {}
        self.errors: list[Diagnostic] = []

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.values.setdefault(path, _mark(node))
        tag = node.tag
        if isinstance(node, yaml.MappingNode):
            if tag and tag != "!" and tag not in _ALLOWED_COLLECTION_TAGS:
                return self._tag_error(node, path)
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if tag and tag != "!" and tag not in _ALLOWED_COLLECTION_TAGS:
                return self._tag_error(node, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        if tag and tag != "!" and tag != _STR_TAG:
            return self._tag_error(node, path)
        if tag or getattr(node, "style", None):  # quoted, block or !!str: text as written
            return node.value
        try:
            return read_plain(node.value)
        except ScalarProblem as problem:
            self.errors.append(
                Diagnostic(path, problem.message, expected=problem.expected, hint=problem.hint).at(*_mark(node))
            )
        return None

    def _tag_error(self, node: yaml.Node, path: PathKey) -> None:
        self.errors.append(
            Diagnostic(
                path,
                f"the YAML tag {_show_tag(node.tag)} is not supported",
                expected="plain YAML values (the only tags read are !!str, !!map and !!seq)",
                hint="remove the tag; quote the value to make it text",
            ).at(*_mark(node))
        )
        return None

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or (
                isinstance(key_node, yaml.ScalarNode) and not key_node.tag and not key_node.style and key_node.value == "<<"
            ):
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
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        decode(text.encode("utf-8", "surrogatepass"), source_name=source_name)  # raises the size error
    try:
        docs = _Composer(source_name).compose(yaml.parse(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise _fail(f"invalid YAML: {problem}{context}", (line, col), source_name, hint="check indentation and quoting") from None
    except yaml.YAMLError as exc:
        raise _fail(f"invalid YAML: {str(exc)[:200]}", (1, 1), source_name) from None
    if not docs:
        raise _fail("the file is empty", (1, 1), source_name, expected="one InferenceStack document")
    if len(docs) > 1:
        raise _fail(
            f"the file holds {len(docs)} YAML documents",
            _mark(docs[1]),
            source_name,
            expected="one InferenceStack document per file",
            hint="split the stacks into separate files",
        )
    root = docs[0]
    if not isinstance(root, yaml.MappingNode):
        raise _fail("the document is not a mapping", _mark(root), source_name, expected="apiVersion, kind, metadata, spec")
    builder = _Builder()
    data = builder.build(root, ())
    if builder.errors:
        raise SpecSyntaxError(builder.errors, source_name=source_name)
    return SourceDoc(data=data, text=text, source_name=source_name, values=builder.values, keys=builder.keys)
