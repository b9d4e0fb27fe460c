"""``aibrix-local``: run a stack on this machine (``up``) or check it end to end (``smoke``).

    aibrix-local up STACK.yaml [--port 8080] [--log-dir DIR] [--engines sim|vllm-cpu] [--model-dir NAME=PATH ...]
    aibrix-local smoke STACK.yaml [--port 0] [--log-dir DIR] [--engines sim|vllm-cpu] [--model-dir NAME=PATH ...]

Exit status: 0 ok (``up``: stopped by Ctrl-C or SIGTERM); 1 an invalid stack, a component
that failed, or a failed smoke check; 2 bad local input (a busy port, no Envoy binary, a
missing file). Every error is one ``error: ...`` line (the compiler's diagnostics for an
invalid stack), and nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from compiler.errors import AibrixError, SpecError, render_diagnostics

from .localize import LocalInputError, LocalStack, localize
from .metrics import fetch
from .runner import LocalRun, RunError
from .smoke import format_checks, run_smoke
from .status import format_status, status_rows
from .supervisor import ComponentFailed

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aibrix-local", description="Run an InferenceStack on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, port, text in (("up", 8080, "run the stack until Ctrl-C or SIGTERM"),
                             ("smoke", 0, "run the stack, check every model and adapter through Envoy, stop")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("stack", help="the InferenceStack YAML file")
        cmd.add_argument("--port", type=int, default=port,
                         help=f"Envoy's listener: the OpenAI endpoint (default {port}; 0 = a free port)")
        cmd.add_argument("--log-dir", type=Path, help="folder for every component's log and config (default: a new temp folder)")
        cmd.add_argument("--ready-timeout", type=float, default=60.0, help="seconds each component may take to start")
        cmd.add_argument("--engines", choices=["sim", "vllm-cpu"], default="sim",
                         help="sim: simulated engines (default; models given with --model-dir still run real vLLM); "
                              "vllm-cpu: real vLLM for every model (each needs --model-dir)")
        cmd.add_argument("--model-dir", action="append", default=[], metavar="NAME=PATH",
                         help="run model NAME as real vLLM (CPU build) from the weights in PATH (repeatable)")
        cmd.add_argument("--vllm-python", default=os.environ.get("AIBRIX_REAL_ENGINE_PYTHON"),
                         help="interpreter of the environment with vLLM's CPU build (default: $AIBRIX_REAL_ENGINE_PYTHON, "
                              "else this one)")
    return parser


class _Stopped(Exception):
    """SIGTERM arrived: stop like Ctrl-C."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def _model_dirs(items: list[str]) -> dict[str, str]:
    dirs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise RunError(f"--model-dir {item}: expected NAME=PATH, e.g. --model-dir qwen2-5-0-5b=./models/qwen")
        if not Path(path).is_dir():
            raise RunError(f"--model-dir {item}: {path} is not a folder; expected a folder with the model's "
                           "config.json, tokenizer and weights")
        dirs[name] = str(Path(path).resolve())
    return dirs


def _load(path: str, model_dirs: dict[str, str], engines: str) -> LocalStack:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"cannot read {path}: no such file; expected the path of an InferenceStack YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    try:
        stack = localize(text, source_name=path, model_dirs=model_dirs)
    except LocalInputError as exc:
        raise RunError(str(exc)) from None
    except SpecError as exc:
        raise _Invalid(render_diagnostics(exc.diagnostics, source_name=exc.source_name, text=text)) from None
    except AibrixError as exc:
        raise _Invalid(f"error: {exc}\n") from None
    simulated = sorted({g.model for g in stack.engines if g.model_dir is None})
    if engines == "vllm-cpu" and simulated:
        raise RunError(f"--engines vllm-cpu: no --model-dir for {', '.join(simulated)}; expected NAME=PATH for every "
                       "model (or --engines sim to simulate the others)")
    return stack


class _Invalid(Exception):
    """An invalid stack: the compiler's rendered diagnostics."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _up(run: LocalRun) -> int:
    models = sorted({g.model for g in run.stack.engines})
    tty = sys.stdout.isatty()
    drawn = 0
    while True:
        for line in run.check_components():
            name = line.split(" ", 1)[0]
            if name in run.engines:
                _say(f"warning: {line}; its endpoints left the gateway's discovery")
            else:
                _say(f"error: {line}")
                return EXIT_FAILED
        if tty:
            lines = format_status(status_rows(fetch(f"{run.gateway_http}/metrics"), models))
            sys.stdout.write((f"\x1b[{drawn}F" if drawn else "") + "".join(f"\x1b[2K{line}\n" for line in lines))
            sys.stdout.flush()
            drawn = len(lines)
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        stack = _load(args.stack, _model_dirs(args.model_dir), args.engines)
        for note in stack.notes:
            _say(f"note: {note}")
        log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix=f"aibrix-local-{stack.name}-"))
        run = LocalRun(stack, log_dir=log_dir, port=args.port, ready_timeout_s=args.ready_timeout,
                       vllm_python=args.vllm_python)
        try:
            with run:
                for warning in run.warnings:
                    _say(f"warning: {warning}")
                key = f", API key {run.api_key}" if run.api_key else ""
                print(f"ready in {run.ready_s:.1f} s: OpenAI base URL {run.base_url}{key}; logs in {log_dir}", flush=True)
                if args.command == "smoke":
                    checks = run_smoke(run)
                    print(format_checks(checks), flush=True)
                    failed = sum(not c.ok for c in checks)
                    print(f"smoke {stack.name}: {len(checks) - failed}/{len(checks)} checks ok", flush=True)
                    return EXIT_FAILED if failed else EXIT_OK
                return _up(run)
        except (KeyboardInterrupt, _Stopped):
            return EXIT_OK
        finally:
            if run.base_url:
                _say("stopped: every component exited")
    except _Invalid as exc:
        sys.stderr.write(str(exc))
        return EXIT_FAILED
    except RunError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except ComponentFailed as exc:
        _say(f"error: {exc}")
        return EXIT_FAILED
    except (KeyboardInterrupt, _Stopped):
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
