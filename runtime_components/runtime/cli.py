"""``aibrix-runtime download URI --dest DIR [options]``: publish a model folder, atomically.

Exit codes: 0 done (fetched or a cache hit), 1 usage (bad arguments, a source the downloader
cannot use), 2 not found, 3 access denied, 4 checksum or size mismatch, 5 network failure after
retries (or another failure). Errors are one ``error:`` block on stderr, never a traceback
(``AIBRIX_RUNTIME_DEBUG=1`` shows one for an unexpected failure).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from pathlib import Path

from .download import DownloadRequest, Outcome, download
from .errors import DownloadError, UsageError
from .sources import SourceOptions

__all__ = ["main"]

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGTP]i?)?\s*$")
_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def byte_size(text: str) -> int:
    """A byte count: ``1073741824``, or with a Kubernetes quantity suffix (``10Gi``, ``500M``)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte count (expected e.g. 1073741824, 10Gi, 500M)")
    return int(m.group(1)) * (_UNITS[m.group(2)] if m.group(2) else 1)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"{self.prog} --help")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="aibrix-runtime", description="The unified runtime's model downloader.")
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)
    dl = sub.add_parser("download", help="fetch a model folder into DIR (atomically, through a shared cache)",
                        description=__doc__.splitlines()[0] if __doc__ else None)
    dl.add_argument("uri", metavar="URI", help="s3://bucket/prefix, gs://bucket/prefix, https://..., oci://registry/repo:tag")
    dl.add_argument("--dest", required=True, type=Path, metavar="DIR", help="where the complete model folder appears")
    dl.add_argument("--cache-root", type=Path, metavar="ROOT", help="the shared cache folder; DIR must be directly inside it")
    dl.add_argument("--cache-max-bytes", type=byte_size, metavar="N",
                    help="after publishing, evict least-recently-used models until ROOT holds at most N bytes")
    dl.add_argument(
        "--endpoint", metavar="URL", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL, or AWS; gs:// uses GCS)"
    )
    dl.add_argument("--parallel", type=int, default=8, metavar="N", help="concurrent ranged reads (default 8)")
    dl.add_argument("--chunk-bytes", type=byte_size, default=16 << 20, metavar="N", help="bytes per ranged read (default 16Mi)")
    dl.add_argument("--token-file", type=Path, metavar="FILE", help="bearer token for https:// sources")
    dl.add_argument("--timeout", type=float, default=60.0, metavar="S", help="connect/read timeout per request, seconds")
    dl.add_argument("--progress-interval", type=float, default=3.0, metavar="S", help="seconds between progress lines (0: none)")
    return ap


def _request(args: argparse.Namespace) -> DownloadRequest:
    if args.parallel < 1 or args.parallel > 256:
        raise UsageError(f"--parallel {args.parallel} is out of range", expected="1 to 256")
    if args.chunk_bytes < 64 << 10:
        raise UsageError(f"--chunk-bytes {args.chunk_bytes} is too small", expected="at least 65536 (64Ki)")
    if args.cache_max_bytes is not None and args.cache_root is None:
        raise UsageError("--cache-max-bytes needs --cache-root", hint="eviction only runs inside a cache root")
    if args.token_file is not None and not args.token_file.is_file():
        raise UsageError("the token file does not exist", where=str(args.token_file))
    return DownloadRequest(
        uri=args.uri,
        dest=args.dest,
        cache_root=args.cache_root,
        cache_max_bytes=args.cache_max_bytes,
        options=SourceOptions(endpoint=args.endpoint, token_file=args.token_file, parallel=args.parallel,
                              timeout_s=args.timeout),
        chunk_bytes=args.chunk_bytes,
        progress_interval_s=args.progress_interval,
    )


def _report(outcome: Outcome) -> None:
    if outcome.hit:
        print(f"aibrix-runtime: cache hit: {outcome.dest}", file=sys.stderr)
        return
    s = outcome.stats
    assert s is not None
    rate = s.fetched_bytes / 1e6 / max(s.seconds, 1e-9)
    print(f"aibrix-runtime: published {outcome.dest}: {s.files} file(s), {s.total_bytes} bytes; fetched "
          f"{s.fetched_bytes} bytes in {s.seconds:.2f}s ({rate:.1f} MB/s), reused {s.reused_bytes} bytes "
          "from an interrupted run", file=sys.stderr)
    for e in outcome.evicted:
        print(f"aibrix-runtime: evicted {e.name} ({e.bytes} bytes)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command != "download":
            raise UsageError("give a subcommand", expected="download", hint="aibrix-runtime download --help")
        _report(download(_request(args)))
        return 0
    except DownloadError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (the partial download is kept and resumed next time)", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"error: {exc.filename or 'file system'}: {exc.strerror or exc}", file=sys.stderr)
        return 5
    except Exception as exc:  # noqa: BLE001 - the contract is an exit code, never a traceback
        if os.environ.get("AIBRIX_RUNTIME_DEBUG"):
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc} (AIBRIX_RUNTIME_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 5


if __name__ == "__main__":
    sys.exit(main())
