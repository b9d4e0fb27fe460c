"""What can go wrong in a download, as data with an exit code.

    DownloadError            exit 5 unless a subclass says otherwise
    +-- UsageError           exit 1: bad arguments, a URI or source the downloader cannot use
    +-- NotFoundError        exit 2: no such bucket, object, prefix, repository or tag
    +-- AccessDeniedError    exit 3: credentials missing, wrong or not allowed
    +-- ChecksumError        exit 4: bytes that disagree with the source's size, ETag or digest
    +-- NetworkError         exit 5: the source kept failing after retries

The CLI prints ``error: <what>`` with the ``where`` (URI or file), ``expected`` and ``hint``
lines that are set, and exits with the code; it never shows a traceback.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ChecksumError",
    "DownloadError",
    "NetworkError",
    "NotFoundError",
    "UsageError",
]


class DownloadError(Exception):
    """A download failure the user can act on."""

    exit_code = 5

    def __init__(self, what: str, *, where: str = "", expected: str = "", hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.expected = expected
        self.hint = hint

    def render(self) -> str:
        lines = [f"error: {self.where}: {self.what}" if self.where else f"error: {self.what}"]
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class UsageError(DownloadError):
    """Bad arguments, or a source the downloader cannot use."""

    exit_code = 1


class NotFoundError(DownloadError):
    """The bucket, object, prefix, repository or tag does not exist."""

    exit_code = 2


class AccessDeniedError(DownloadError):
    """The source refused the credentials (or their absence)."""

    exit_code = 3


class ChecksumError(DownloadError):
    """Downloaded bytes disagree with the source's size, ETag or digest (or the object changed)."""

    exit_code = 4


class NetworkError(DownloadError):
    """A transfer kept failing after its retries."""

    exit_code = 5
