"""`aibrix-diag`: one diagnostic pass (exit code by worst status), or the periodic daemon.

    aibrix-diag                                  # one pass over this node's GPUs, text report
    aibrix-diag --json                           # the same as JSON
    aibrix-diag --mock examples/faults/nvlink-down.yaml
    aibrix-diag --periodic --config /etc/aibrix-diag/config.yaml   # the DaemonSet's command

Exit codes: 0 ok, 1 warn, 2 fail, 3 NVML not present (a state, not a fault), 4 bad input.
Environment: AIBRIX_DIAG_MOCK (a fault file: same as --mock), AIBRIX_DIAG_CONFIG (same as
--config), NODE_NAME (the node, from the downward API's spec.nodeName).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from aibrix_spec.components.diag import DiagConfig, FaultFile
from runtime_components.diag.loading import DiagInputError, load_model_file
from runtime_components.diag.report import EXIT_USAGE, Report

__all__ = ["main"]

MOCK_ENV = "AIBRIX_DIAG_MOCK"
CONFIG_ENV = "AIBRIX_DIAG_CONFIG"
NODE_ENV = "NODE_NAME"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n  hint: aibrix-diag --help lists the options\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="aibrix-diag", description="GPU diagnostics through NVML (or a fault-file mock-up).")
    p.add_argument("--config", help=f"diag config YAML (the ConfigMap's config.yaml); env {CONFIG_ENV}")
    p.add_argument("--mock", help=f"fault file: run every check against a fake NVML built from it; env {MOCK_ENV}")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p.add_argument("--output", help="also write the JSON report to this file")
    p.add_argument("--verbose", action="store_true", help="list ok results too")
    p.add_argument("--node-name", help=f"node name; default env {NODE_ENV}, then the fault file's node, then hostname")
    p.add_argument("--xid-wait-ms", type=int, help="one-shot: how long to listen for XID events (config xidWaitMs)")
    p.add_argument("--periodic", action="store_true", help="run passes forever: /metrics, node condition and taint")
    p.add_argument("--interval", type=float, help="periodic: seconds between passes (config intervalSeconds)")
    p.add_argument("--metrics-port", type=int, help="periodic: /metrics port, 0 for a free one (config metrics.port)")
    p.add_argument("--max-passes", type=int, help="periodic: stop after this many passes (for tests)")
    p.add_argument("--kubeconfig", help="periodic: kubeconfig for node updates (default: in-cluster service account)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _load_config(args: argparse.Namespace) -> DiagConfig:
    path = args.config or os.environ.get(CONFIG_ENV)
    config = load_model_file(path, DiagConfig) if path else DiagConfig()
    updates: dict[str, Any] = {}
    for option, field, minimum in (("xid_wait_ms", "xid_wait_ms", 0), ("interval", "interval_seconds", 0.001)):
        value = getattr(args, option)
        if value is not None:
            if value < minimum:
                raise _UsageError(f"--{option.replace('_', '-')} must be at least {minimum}, got {value}")
            updates[field] = value
    if args.metrics_port is not None:
        if not 0 <= args.metrics_port <= 65535:
            raise _UsageError(f"--metrics-port must be 0..65535, got {args.metrics_port}")
        updates["metrics"] = config.metrics.model_copy(update={"port": args.metrics_port})
    if args.max_passes is not None and args.max_passes < 1:
        raise _UsageError(f"--max-passes must be at least 1, got {args.max_passes}")
    return config.model_copy(update=updates) if updates else config


def _nvml_surface(args: argparse.Namespace, config: DiagConfig) -> tuple[Any, DiagConfig, FaultFile | None]:
    mock = args.mock or os.environ.get(MOCK_ENV)
    if not mock:
        import pynvml

        return pynvml, config, None
    from runtime_components.diag.fake_nvml import FakeNvml

    faults = load_model_file(mock, FaultFile)
    if config.expected_gpu_count is None:
        # As the compiler would from the pool: the node should show every GPU installed in it.
        config = config.model_copy(update={"expected_gpu_count": faults.gpu_count})
    return FakeNvml(faults), config, faults


def _emit(report: Report, args: argparse.Namespace) -> None:
    sys.stdout.write(report.to_json_text() if args.json else report.render_text(verbose=args.verbose))
    sys.stdout.flush()
    if args.output:
        Path(args.output).write_text(report.to_json_text(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        config = _load_config(args)
        nvml, config, faults = _nvml_surface(args, config)
        node = args.node_name or os.environ.get(NODE_ENV) or (faults.node if faults else socket.gethostname())
        if args.periodic:
            return _periodic(args, config, nvml, node)
        from runtime_components.diag.session import DiagSession

        with DiagSession(nvml, config, node=node) as session:
            report = session.run_pass(
                xid_wait_ms=config.xid_wait_ms, xid_window=f"during the {config.xid_wait_ms} ms listening window"
            )
        _emit(report, args)
        return report.exit_code
    except DiagInputError as error:
        sys.stderr.write(error.render())
        return EXIT_USAGE
    except _UsageError as error:
        sys.stderr.write(f"error: {error}\n  hint: aibrix-diag --help lists the options\n")
        return EXIT_USAGE
    except OSError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_USAGE


def _periodic(args: argparse.Namespace, config: DiagConfig, nvml: Any, node: str) -> int:
    from runtime_components.diag.daemon import run_periodic
    from runtime_components.diag.metrics import DiagCollector, MetricsServer
    from runtime_components.diag.node_actions import NodeReporter, build_core_api
    from runtime_components.diag.session import DiagSession

    reporter = None
    if config.node.set_condition or config.node.taint_on_failure:
        if not (args.node_name or os.environ.get(NODE_ENV)):
            raise _UsageError(
                f"node.setCondition/taintOnFailure need the node's name: pass --node-name or set "
                f"{NODE_ENV} from the downward API (fieldRef spec.nodeName)"
            )
        try:
            api = build_core_api(args.kubeconfig)
        except Exception as error:  # the client raises ConfigException, OSError, yaml errors...
            raise _UsageError(
                f"cannot configure the Kubernetes client: {error}; pass --kubeconfig outside a pod"
            ) from None
        reporter = NodeReporter(api, node, config.node)
    collector, server = None, None
    if config.metrics.enabled:
        collector = DiagCollector()
        server = MetricsServer(collector, address=config.metrics.bind_address, port=config.metrics.port)
        logging.getLogger("aibrix.diag").info(
            "serving metrics on http://%s:%d/metrics", config.metrics.bind_address, server.port
        )
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with DiagSession(nvml, config, node=node) as session:
            last = run_periodic(
                session,
                interval_seconds=config.interval_seconds,
                stop=stop,
                collector=collector,
                reporter=reporter,
                max_passes=args.max_passes,
                on_report=(lambda r: _emit(r, args)) if args.max_passes else None,
            )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            server.close()
    return last.exit_code if (last is not None and args.max_passes) else 0
