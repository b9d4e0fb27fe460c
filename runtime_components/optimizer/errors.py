"""Errors the optimizer reports to users.

    OptimizerError            anything a user can fix: bad files, bad arguments
    ├── InputFileError        a config, profile or workload file is unreadable or invalid
    └── InfeasibleError       no plan meets the SLO within the caps (carries the report)

Each message says what was wrong, where, what was expected, and a hint; the CLI prints it
without a traceback and exits non-zero.
"""

from __future__ import annotations

__all__ = ["OptimizerError", "InputFileError", "InfeasibleError"]


class OptimizerError(Exception):
    """Base of every error the optimizer reports to a user."""


class InputFileError(OptimizerError):
    """A config, profile or workload file could not be used."""

    def __init__(self, path: str, problem: str, *, hint: str = "") -> None:
        self.path = path
        self.problem = problem
        self.hint = hint
        message = f"{path}: {problem}"
        if hint:
            message += f"\n  hint: {hint}"
        super().__init__(message)

    @classmethod
    def rendered(cls, path: str, text: str) -> InputFileError:
        """An error the shared config loader already rendered (``path:line:col: field`` ...).

        ``text`` is that rendering less its first ``error: ``, which the CLI prints itself.
        """
        error = cls(path, text)
        error.args = (text,)
        return error


class InfeasibleError(OptimizerError):
    """No assignment meets the SLO within the caps; ``reasons`` name the binding constraints."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("no plan meets the SLO within the constraints:\n" + "\n".join(f"  - {r}" for r in reasons))
