"""Errors of aibrix-compile: data first, rendered in one place.

Hierarchy::

    AibrixError                 base of everything the compiler raises on purpose
    +-- SpecError               the input is wrong; carries one or more Diagnostics
    |   +-- SpecSyntaxError     not YAML, not one mapping, duplicate keys
    |   +-- SpecValidationError a field has the wrong type, value or name
    |   +-- SpecReferenceError  a name points at nothing, or two sections disagree
    |   +-- NotCompiledYetError the spec is valid but enables a feature with no renderer yet
    +-- UsageError              command-line options are wrong (exit code 2)
    +-- CompilerBug             an internal invariant broke; names the pass

A :class:`Diagnostic` is (path, line, column, message, expected, hint). Passes after
parsing only know the path; the pipeline fills in line and column from the source map.
:func:`render_diagnostics` prints them sorted by line, each with the offending source
line and a caret::

    error: stacks/prod.yaml:42:18: models[1].placement.pools[0]
      unknown pool "l2O"
         42 |       pools: [l2O]
            |               ^
      expected: a name under gpuPools: a10, l20
      hint: did you mean "l20"?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "AibrixError",
    "CompilerBug",
    "Diagnostic",
    "NotCompiledYetError",
    "SpecError",
    "SpecReferenceError",
    "SpecSyntaxError",
    "SpecValidationError",
    "UsageError",
    "did_you_mean",
    "excerpt",
    "format_path",
    "render_diagnostics",
]

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """Render a path the way YAML users read it: ``models[1].placement.pools[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def did_you_mean(got: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(got, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else ""


@dataclass(frozen=True)
class Diagnostic:
    """One thing wrong with the input, with everything needed to show it."""

    path: Path
    message: str
    expected: str = ""
    hint: str = ""
    line: int = 0  #: 1-based; 0 = unknown (filled in by the pipeline)
    column: int = 0  #: 1-based

    def at(self, line: int, column: int) -> Diagnostic:
        return replace(self, line=line, column=column)


class AibrixError(Exception):
    """Base of every error the compiler raises on purpose."""


class SpecError(AibrixError):
    """The input stack is wrong; ``diagnostics`` lists every problem found by one pass."""

    def __init__(self, diagnostics: Sequence[Diagnostic], *, source_name: str = "<stack>") -> None:
        self.diagnostics = tuple(diagnostics)
        self.source_name = source_name
        super().__init__("; ".join(f"{format_path(d.path)}: {d.message}" for d in self.diagnostics))

    def with_positions(self, diagnostics: Sequence[Diagnostic], source_name: str) -> SpecError:
        """The same kind of error with positioned diagnostics and a file name."""
        return type(self)(diagnostics, source_name=source_name)


class SpecSyntaxError(SpecError):
    """The text is not one YAML mapping (bad YAML, several documents, duplicate keys)."""


class SpecValidationError(SpecError):
    """A field has the wrong type or value, or is unknown."""


class SpecReferenceError(SpecError):
    """A reference resolves to nothing, or two parts of the spec contradict each other."""


class NotCompiledYetError(SpecError):
    """The spec is valid but enables a feature whose renderer does not exist yet."""


class UsageError(AibrixError):
    """Command-line options are wrong (exit code 2)."""


class CompilerBug(AibrixError):
    """An internal invariant broke: a bug in aibrix-compile, not in the input."""

    def __init__(self, pass_name: str, detail: str) -> None:
        self.pass_name = pass_name
        super().__init__(
            f"internal error in the {pass_name} pass: {detail}; "
            "this is a bug in aibrix-compile, please report it with the input stack"
        )


def _clip(text: str, width: int = 400) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def excerpt(line: str, column: int, width: int) -> tuple[str, int]:
    """At most ``width`` characters of ``line`` around ``column``, and the caret's column there.

    >>> excerpt("abcdefghij", 9, 4)
    ('...ghij', 6)
    """
    if len(line) <= width:
        return line, column
    start = min(max(0, column - 1 - width // 2), len(line) - width)
    head = "..." if start > 0 else ""
    tail = "..." if start + width < len(line) else ""
    return head + line[start : start + width] + tail, column - start + len(head)


def render_diagnostics(diagnostics: Sequence[Diagnostic], *, source_name: str, text: str) -> str:
    """All diagnostics, sorted by position, as the text users read on stderr.

    Output stays proportional to the number of errors shown, not to the input: a long
    source line is quoted as an excerpt around the column, and after
    :data:`~compiler.limits.MAX_ERRORS_SHOWN` errors the rest are only counted.
    """
    from .limits import EXCERPT_WIDTH, MAX_ERRORS_SHOWN

    lines = text.splitlines()
    blocks = []
    ordered = sorted(diagnostics, key=lambda d: (d.line or 10**9, d.column, format_path(d.path), d.message))
    for d in ordered[:MAX_ERRORS_SHOWN]:
        where = f"{source_name}:{d.line}:{d.column}" if d.line else source_name
        block = [f"error: {where}: {_clip(format_path(d.path), 200)}", f"  {_clip(d.message)}"]
        if d.line and d.line <= len(lines):
            quoted, caret = excerpt(lines[d.line - 1], max(d.column, 1), EXCERPT_WIDTH)
            gutter = str(d.line).rjust(6)
            block.append(f"{gutter} | {quoted}")
            block.append(f"{' ' * 6} | {' ' * (caret - 1)}^")
        if d.expected:
            block.append(f"  expected: {_clip(d.expected)}")
        if d.hint:
            block.append(f"  hint: {_clip(d.hint)}")
        blocks.append("\n".join(block))
    count = len(diagnostics)
    if count > MAX_ERRORS_SHOWN:
        rest = count - MAX_ERRORS_SHOWN
        blocks.append(f"... and {rest} more error{'s' if rest != 1 else ''} not shown (fix the ones above first)")
    blocks.append(f"{count} error{'s' if count != 1 else ''} in {source_name}")
    return "\n".join(blocks) + "\n"
