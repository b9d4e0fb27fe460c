"""What a PromQL expression reads: its metric selectors and the labels it groups or joins on.

Not a PromQL parser: a tokenizer and a few rules, enough for the queries this compiler writes
(dashboards, alert rules) and strict about what it does not understand, so a query it cannot
read fails loudly instead of passing a check unread.

- ``name{label op "value", ...}`` and a bare ``name`` are selectors (``name`` may hold
  colons, as ``vllm:num_requests_running`` does);
- an identifier followed by ``(``, ``by`` or ``without`` is a function or an aggregation
  (``rate(``, ``sum by (le) (``);
- ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right`` followed by ``( ... )``
  name grouping (or join) labels;
- ``and``/``or``/``unless``/``bool``/``offset`` are keywords; ``[5m]`` ranges, numbers and
  strings are skipped;
- a selector without a metric name (``{__name__=~"..."}``) is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PromQLError", "Query", "Selector", "read_query"]

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      |(?P<range>\[[^\]]*\])
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<matchop>=~|!~|!=|==|<=|>=)
      |(?P<punct>[(){},=<>+\-*/%^])""",
    re.VERBOSE,
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


class PromQLError(ValueError):
    """A query this reader does not understand (position and reason in the message)."""


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: tuple[str, ...]  #: label names its matchers filter on, in query order


@dataclass(frozen=True)
class Query:
    selectors: tuple[Selector, ...]
    grouping: tuple[str, ...]  #: labels named in by/without/on/ignoring/group_left/group_right

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for s in self.selectors)


def _tokens(expr: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise PromQLError(f"unexpected character {expr[pos]!r} at {pos} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group(), pos))
        pos = match.end()
    return out


def _label_list(tokens: list[tuple[str, str, int]], i: int, expr: str) -> tuple[list[str], int]:
    """Labels of ``( a, b )`` starting at tokens[i] == "("; returns them and the index after ")"."""
    labels: list[str] = []
    i += 1
    while i < len(tokens) and tokens[i][1] != ")":
        kind, text, pos = tokens[i]
        if kind == "ident":
            labels.append(text)
        elif text != ",":
            raise PromQLError(f"expected a label name at {pos} in {expr!r}, got {text!r}")
        i += 1
    if i >= len(tokens):
        raise PromQLError(f"unclosed label list in {expr!r}")
    return labels, i + 1


def _matchers(tokens: list[tuple[str, str, int]], i: int, expr: str) -> tuple[list[str], int]:
    """Label names of ``{ a="x", b=~"y" }`` starting at tokens[i] == "{"."""
    labels: list[str] = []
    i += 1
    while i < len(tokens) and tokens[i][1] != "}":
        if tokens[i][1] == ",":
            i += 1
            continue
        if i + 2 >= len(tokens) or tokens[i][0] != "ident" or tokens[i + 2][0] != "string" \
                or tokens[i + 1][1] not in ("=", "!=", "=~", "!~"):
            raise PromQLError(f"expected label op \"value\" at {tokens[i][2]} in {expr!r}")
        labels.append(tokens[i][1])
        i += 3
    if i >= len(tokens):
        raise PromQLError(f"unclosed matcher list in {expr!r}")
    return labels, i + 1


def read_query(expr: str) -> Query:
    """The selectors and grouping labels of ``expr``; PromQLError when it cannot read it."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    grouping: list[str] = []
    depth, i = 0, 0
    while i < len(tokens):
        kind, text, pos = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING:
            if following == "(":
                labels, i = _label_list(tokens, i + 1, expr)
                grouping += labels
            else:  # group_left without labels
                i += 1
            continue
        if kind == "ident" and (following == "(" or following in ("by", "without")):  # function, aggregation
            i += 1
            continue
        if kind == "ident" and text.lower() in _KEYWORDS:
            i += 1
            continue
        if kind == "ident":
            i += 1
            matched: list[str] = []
            if following == "{":
                matched, i = _matchers(tokens, i, expr)
            selectors.append(Selector(text, tuple(matched)))
            continue
        if text == "{":
            raise PromQLError(f"a selector without a metric name at {pos} in {expr!r} (not supported)")
        depth += {"(": 1, ")": -1}.get(text, 0)
        if depth < 0:
            raise PromQLError(f"unbalanced ')' at {pos} in {expr!r}")
        i += 1
    if depth:
        raise PromQLError(f"unbalanced parentheses in {expr!r}")
    return Query(tuple(selectors), tuple(grouping))
