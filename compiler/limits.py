"""Bounds on the work one input may cause: the compiler reads untrusted files.

An ArgoCD repo-server runs ``aibrix-compile`` on whatever is pushed to git, so every
limit here turns a denial of service into one clear error. The numbers are far above
any real stack (the benchmark's stack of 100 models and 500 adapters is 64 KB, 6,800
values and 7 levels deep) and low enough that a file at every limit still compiles or
fails within a second of CPU, process start included (about 20 µs per value when every
value is an error: parse, validate, position).
"""

from __future__ import annotations

__all__ = ["EXCERPT_WIDTH", "MAX_BYTES", "MAX_DEPTH", "MAX_ERRORS_SHOWN", "MAX_VALUES"]

#: Largest stack file read, in bytes (1 MiB).
MAX_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (an InferenceStack needs about 7).
MAX_DEPTH = 32
#: Most values (scalars, mappings and lists) one document may build, aliases expanded:
#: a YAML alias copies its anchor's whole value, so ten levels of nine aliases build 9^10.
MAX_VALUES = 30_000
#: Characters of a source line quoted under an error, around the column.
EXCERPT_WIDTH = 100
#: Errors printed in full; the rest are counted.
MAX_ERRORS_SHOWN = 20
