"""Plain YAML scalars, read the YAML 1.2 way and refused where YAML 1.1 disagrees.

A stack file is read by many YAML libraries: ours, kubectl's, editors and linters, some
following YAML 1.1 (PyYAML, go-yaml v2), some 1.2. A plain (unquoted) value that the two
versions read differently, such as ``on`` (1.1: true), ``010000`` (1.1: octal 4096),
``1:08:16`` (1.1: sexagesimal 4096) or ``2024-01-01`` (1.1: a date), is refused with a
hint to quote it; everything else is read with the 1.2 core schema. We refuse rather than
pick one reading: the author's intent is unknown, and the quoted form means the same to
every reader.

Numbers must also be finite (``.inf`` and ``.nan`` are refused) and integers must fit in
64 bits, the range Kubernetes and JSON consumers of the output accept.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

__all__ = ["ScalarProblem", "read_plain"]

_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+\Z")
_INT8 = re.compile(r"0o[0-7]+\Z")
_INT16 = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")
# true/false, null, decimal integers without a leading zero, decimals with a dot and no
# exponent, and text starting with a letter YAML 1.1 gives no special meaning to.
_SAME_IN_BOTH = re.compile(
    r"(true|True|TRUE|false|False|FALSE|null|Null|NULL|~|[-+]?(0|[1-9][0-9]*)(\.[0-9]+)?"
    r"|[A-MP-SU-XZa-mp-su-xz_/][^:#]*)\Z"
)
_INT64 = 1 << 63
_MAX_DIGITS = 19  # 2^63 has 19 digits; longer decimal text is out of range for sure

_YAML11 = yaml.resolver.Resolver()
_YAML11_TYPES = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": bool,
    "tag:yaml.org,2002:null": type(None),
}
_CONSTRUCT11 = yaml.constructor.SafeConstructor()


class ScalarProblem(Exception):
    """A plain scalar the compiler will not read; carries the user-facing text."""

    def __init__(self, message: str, *, expected: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.expected, self.hint = message, expected, hint


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:37] + "..."


def _core(value: str) -> Any:
    """The YAML 1.2 core-schema reading of a plain scalar."""
    if value in _NULL:
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT10.match(value):
        if len(value.lstrip("+-")) > _MAX_DIGITS + 1:
            return _INT64  # surely out of range; avoids converting a megabyte of digits
        return int(value)
    if _INT8.match(value):
        return int(value[2:], 8) if len(value) <= 24 else _INT64
    if _INT16.match(value):
        return int(value[2:], 16) if len(value) <= 18 else _INT64
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return -math.inf if value.startswith("-") else math.inf
    if _NAN.match(value):
        return math.nan
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, _Unreadable):
        return f"an invalid {value.kind}"
    return "a date" if type(value).__name__ in ("date", "datetime") else type(value).__name__


class _Unreadable:
    """What YAML 1.1 makes of a value it types but cannot construct (2024-13-45)."""

    def __init__(self, tag: str) -> None:
        self.kind = tag.rpartition(":")[2]


def _yaml11(value: str) -> Any:
    """What YAML 1.1 (PyYAML's safe schema) reads."""
    tag: str = _YAML11.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if tag == "tag:yaml.org,2002:str":
        return value
    try:
        return _CONSTRUCT11.construct_object(yaml.ScalarNode(tag, value))
    except (yaml.YAMLError, ValueError, OverflowError):
        return _Unreadable(tag)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def read_plain(value: str) -> Any:
    """Read one plain (unquoted, untagged) scalar; raise :class:`ScalarProblem` when refused.

    >>> read_plain("8"), read_plain("0.5"), read_plain("true"), read_plain("hf://x")
    (8, 0.5, True, 'hf://x')
    """
    core = _core(value)
    if isinstance(core, float) and not math.isfinite(core):
        raise ScalarProblem(
            f"{_short(value)} is not a finite number",
            expected="a finite number",
            hint=f'write a finite number, or quote it ("{_short(value)}") if it is text',
        )
    if isinstance(core, int) and not isinstance(core, bool) and not -_INT64 <= core < _INT64:
        raise ScalarProblem(
            f"the integer {_short(value)} is out of range",
            expected="an integer between -2^63 and 2^63-1",
            hint=f'quote it ("{_short(value)}") if it is text',
        )
    if _SAME_IN_BOTH.match(value):  # the common plain forms both versions read alike
        return core
    old = _yaml11(value)
    if not _same(old, core):
        what_old = _describe(old)
        if isinstance(old, bool):
            hint = f'write true or false for a boolean, or quote it ("{_short(value)}") for text'
        elif any(isinstance(v, (int, float)) for v in (old, core)):
            hint = f'quote it ("{_short(value)}") if it is text, or write a plain decimal number such as 4096 or 0.5'
        else:
            hint = f'quote it ("{_short(value)}") to make it text'
        raise ScalarProblem(
            f"{_short(value)} means {what_old} in YAML 1.1 but {_describe(core)} in YAML 1.2",
            expected="a value every YAML reader reads the same way",
            hint=hint,
        )
    return core
