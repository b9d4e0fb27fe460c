"""The ``aibrix-compile`` command line: the only part of the compiler that does I/O.

    aibrix-compile STACK.yaml [-o DIR | --check DIR] [--kube-version V] [--namespace NS]
                              [--validate] [--crd-dir DIR]
    aibrix-compile validate STACK.yaml... [--kube-version V] [--namespace NS] [--crd-dir DIR] [--spec-only]
    aibrix-compile explain STACK.yaml [--namespace NS] [--format text|html]
    aibrix-compile schema
    aibrix-compile prerequisites STACK.yaml [--namespace NS] [--argocd-namespace NS]
    aibrix-compile preflight STACK.yaml [--kubeconfig FILE] [--context NAME] [--namespace NS]

stdout carries manifests (or the schema, table or diff) only; diagnostics go to stderr.
Exit codes: 0 ok, 1 invalid input, invalid output or stale --check, 2 usage.
The stream is written only after the whole compile succeeded, so a failure prints nothing
on stdout (ArgoCD then reports the error instead of applying an empty app).
Heavy modules are imported inside the command that needs them to keep start-up light.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

__all__ = ["main"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
_SOURCE_TEXT: dict[str, str] = {}  # what was read, to quote offending lines in errors
_COMMANDS = ("compile", "validate", "explain", "schema", "prerequisites", "preflight")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in our format, with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\nhint: run {self.prog} --help\n")
        raise SystemExit(EXIT_USAGE)


def _add_stack_options(parser: argparse.ArgumentParser, *, kube: bool = True, several: bool = False) -> None:
    if several:
        parser.add_argument("stacks", metavar="STACK.yaml", nargs="+", help="InferenceStack files ('-' reads stdin)")
    else:
        parser.add_argument("stack", metavar="STACK.yaml", help="the InferenceStack file ('-' reads stdin)")
    parser.add_argument("--namespace", help="namespace when the stack's metadata.namespace is empty (ArgoCD's app namespace)")
    if kube:
        from .kube_version import DEFAULT_KUBE_VERSION, NEWEST, OLDEST

        parser.add_argument(
            "--kube-version",
            default=os.environ.get("KUBE_VERSION") or DEFAULT_KUBE_VERSION,
            help=f"target Kubernetes version, {OLDEST[0]}.{OLDEST[1]} or newer; newer than {NEWEST[0]}.{NEWEST[1]} "
            f"compiles with {NEWEST[0]}.{NEWEST[1]}'s rules and a warning (default: $KUBE_VERSION, else {DEFAULT_KUBE_VERSION})",
        )
        parser.add_argument("--crd-dir", type=Path, help="validate custom resources against the CRDs in this directory")


def _parser() -> argparse.ArgumentParser:
    root = _Parser(prog="aibrix-compile", description="Compile an InferenceStack into Kubernetes manifests.")
    sub = root.add_subparsers(
        dest="command", metavar="{compile,validate,explain,schema,prerequisites,preflight}", parser_class=_Parser
    )
    comp = sub.add_parser("compile", help="print the manifests (the default command)")
    _add_stack_options(comp)
    target = comp.add_mutually_exclusive_group()
    target.add_argument("-o", "--output", type=Path, metavar="DIR", help="write one file per object plus kustomization.yaml")
    target.add_argument("--check", type=Path, metavar="DIR", help="exit 1 with a diff when DIR is not the current output")
    comp.add_argument("--validate", action="store_true", help="also validate the objects (kubernetes-validate, strict)")
    val = sub.add_parser("validate", help="compile and validate the objects, print nothing on success")
    _add_stack_options(val, several=True)
    val.add_argument("--spec-only", action="store_true", help="check the stack only (also stacks with features not compiled yet)")
    exp = sub.add_parser("explain", help="a table of models, pools, GPUs, replicas and cost per hour")
    _add_stack_options(exp, kube=False)
    exp.add_argument("--format", choices=("text", "html"), default="text",
                     help="text: the table (default); html: a self-contained report page")
    sub.add_parser("schema", help="print the InferenceStack JSON Schema")
    pre = sub.add_parser("prerequisites", help="the operators the stack needs, as ArgoCD Applications")
    _add_stack_options(pre)
    pre.add_argument("--argocd-namespace", default="argocd", help="namespace of the Applications (default: argocd)")
    fly = sub.add_parser("preflight", help="read-only checks that a cluster can run the stack (exit 1 on a failure)")
    _add_stack_options(fly)
    fly.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)")
    fly.add_argument("--context", help="kubeconfig context (default: the current one)")
    return root


def _read(path_text: str) -> tuple[str, str]:
    """The stack's text; a file that is too large or not UTF-8 is an invalid stack (exit 1)."""
    from .errors import UsageError
    from .limits import MAX_BYTES
    from .parse import decode

    name = "<stdin>" if path_text == "-" else path_text
    try:
        if path_text == "-":
            stream = getattr(sys.stdin, "buffer", None)  # a text-only stdin (tests) has no buffer
            data = stream.read(MAX_BYTES + 1) if stream is not None else sys.stdin.read(MAX_BYTES + 1).encode()
        else:
            with open(path_text, "rb") as f:
                data = f.read(MAX_BYTES + 1)  # never more: the size error needs only the first MiB
    except FileNotFoundError:
        raise UsageError(f"cannot read {path_text}: no such file; expected the path of an InferenceStack YAML file") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path_text}: it is a directory; expected an InferenceStack YAML file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path_text}: {exc.strerror}") from None
    _SOURCE_TEXT[name] = data[:MAX_BYTES].decode("utf-8", "replace")  # to quote lines if it is refused
    _SOURCE_TEXT[name] = decode(data, source_name=name)
    return _SOURCE_TEXT[name], name


def _objects(files: dict[str, str]) -> list[dict[str, object]]:
    import yaml

    from .serialize import KUSTOMIZATION

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [yaml.load(text, Loader=loader) for path, text in files.items() if path != KUSTOMIZATION]


def _check_output(files: dict[str, str], args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .output_check import check_objects

    if args.crd_dir is not None and not args.crd_dir.is_dir():
        raise UsageError(f"--crd-dir {args.crd_dir}: not a directory; expected a directory of CRD YAML files")

    problems = check_objects(_objects(files), kube_version=args.kube_version, crd_dir=args.crd_dir)
    for line in problems:
        sys.stderr.write(f"error: invalid output: {line}\n")
    if problems:
        sys.stderr.write(f"{len(problems)} invalid object(s); this is a bug in aibrix-compile, please report it\n")
    return EXIT_INVALID if problems else EXIT_OK


def _target_version(args: argparse.Namespace) -> None:
    """Warn (once, on stderr) about a version newer than known, and target the newest known."""
    from .kube_version import format_version, newer_than_known, parse_kube_version

    warning = newer_than_known(args.kube_version)
    if warning is not None:
        sys.stderr.write(warning + "\n")
        args.kube_version = format_version(parse_kube_version(args.kube_version))


def _compile(args: argparse.Namespace) -> int:
    from .pipeline import compile_manifests
    from .serialize import serialize, to_stream

    _target_version(args)
    text, name = _read(args.stack)
    plan, manifests = compile_manifests(text, source_name=name, kube_version=args.kube_version, namespace=args.namespace)
    for warning in plan.warnings:
        sys.stderr.write(warning + "\n")
    files = serialize(manifests)
    if args.validate or args.crd_dir is not None:
        if _check_output(files, args) != EXIT_OK:
            return EXIT_INVALID
    if args.output is not None:
        from .outdir import write_tree

        write_tree(args.output, files)
        sys.stderr.write(f"wrote {len(files)} files to {args.output}\n")
        return EXIT_OK
    if args.check is not None:
        from .outdir import diff_tree

        diff = diff_tree(args.check, files)
        if diff:
            sys.stdout.write(diff)
            sys.stderr.write(f"error: {args.check} is stale; regenerate it with: aibrix-compile {args.stack} -o {args.check}\n")
            return EXIT_INVALID
        return EXIT_OK
    sys.stdout.write(to_stream(files))
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    """Validate every stack given; report each one's errors; 1 if any failed."""
    from .errors import SpecError, render_diagnostics

    status = EXIT_OK
    _target_version(args)
    for stack in args.stacks:
        try:
            status = max(status, _validate_one(stack, args))
        except SpecError as exc:
            text = _SOURCE_TEXT.get(exc.source_name, "")
            sys.stderr.write(render_diagnostics(exc.diagnostics, source_name=exc.source_name, text=text))
            status = EXIT_INVALID
    return status


def _validate_one(stack: str, args: argparse.Namespace) -> int:
    text, name = _read(stack)
    if args.spec_only:
        from .kube_version import parse_kube_version
        from .pipeline import resolve_stack

        parse_kube_version(args.kube_version)
        resolve_stack(text, source_name=name, namespace=args.namespace)
        sys.stderr.write(f"{name}: the stack is valid\n")
        return EXIT_OK
    from .pipeline import compile_stack

    files = compile_stack(text, source_name=name, kube_version=args.kube_version, namespace=args.namespace)
    status = _check_output(files, args)
    if status == EXIT_OK:
        sys.stderr.write(f"{name}: the stack is valid and its {len(files) - 1} objects pass validation\n")
    return status


def _explain(args: argparse.Namespace) -> int:
    from .explain import explain_table
    from .kube_version import DEFAULT_KUBE_VERSION, parse_kube_version
    from .pipeline import resolve_stack
    from .plan import plan

    text, name = _read(args.stack)
    doc, resolved = resolve_stack(text, source_name=name, namespace=args.namespace)
    planned = plan(resolved, kube_version=parse_kube_version(DEFAULT_KUBE_VERSION))
    if args.format == "html":
        from .report import render_html, report_context

        sys.stdout.write(render_html(report_context(planned, doc.data)))
    else:
        sys.stdout.write(explain_table(planned))
    return EXIT_OK


def _schema(_args: argparse.Namespace) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def _prerequisites(args: argparse.Namespace) -> int:
    from .cluster_needs import cluster_needs
    from .pipeline import compile_manifests
    from .prerequisites import prerequisites_stream

    text, name = _read(args.stack)
    _plan, manifests = compile_manifests(text, source_name=name, kube_version=args.kube_version, namespace=args.namespace)
    stream = prerequisites_stream(cluster_needs(manifests), argocd_namespace=args.argocd_namespace)
    sys.stdout.write(stream)
    return EXIT_OK


def _preflight(args: argparse.Namespace) -> int:
    from .cluster_needs import cluster_needs
    from .pipeline import compile_manifests
    from .preflight import run_preflight

    text, name = _read(args.stack)
    _plan, manifests = compile_manifests(text, source_name=name, kube_version=args.kube_version, namespace=args.namespace)
    return run_preflight(cluster_needs(manifests), kubeconfig=args.kubeconfig, context=args.context, out=sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aibrix-compile`` console script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] not in _COMMANDS and arguments[0] not in ("-h", "--help"):
        arguments.insert(0, "compile")  # `aibrix-compile STACK.yaml` means compile
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exc:  # --help (0) or a usage error already printed (2)
        return int(exc.code or 0)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    from .errors import AibrixError, CompilerBug, SpecError, UsageError, render_diagnostics

    handlers = {
        "compile": _compile,
        "validate": _validate,
        "explain": _explain,
        "schema": _schema,
        "prerequisites": _prerequisites,
        "preflight": _preflight,
    }
    try:
        return handlers[args.command](args)
    except SpecError as exc:
        text = _SOURCE_TEXT.get(exc.source_name, "")
        sys.stderr.write(render_diagnostics(exc.diagnostics, source_name=exc.source_name, text=text))
        return EXIT_INVALID
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except (CompilerBug, AibrixError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_INVALID
    except OSError as exc:
        sys.stderr.write(f"error: {exc.strerror or exc}: {exc.filename or ''}\n")
        return EXIT_INVALID
    except Exception as exc:  # never a traceback: report it as our bug
        sys.stderr.write(f"error: {CompilerBug(args.command, f'{type(exc).__name__}: {exc}')}\n")
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
