"""`aibrix-kv-server`: run one KV-cache pool member.

    aibrix-kv-server --config pool.yaml            # the `server:` block of a KVPoolConfig
    aibrix-kv-server --capacity 2Gi --port 9600    # flags alone (or override the file)

Bad input (missing file, YAML error, unknown field, bad size) prints one message naming the
file and the field, what was expected and a hint, and exits 2: never a traceback. SIGTERM
and SIGINT drain in-flight requests (up to `drainSeconds`) before exiting 0.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from aibrix_spec.components import kv as kv_models
from aibrix_spec.components.kv import KVPoolConfig, KVServerConfig
from runtime_components.common.config_file import ConfigFileError, load_model_file
from runtime_components.common.shutdown import stop_event
from runtime_components.kv.server import KVServer

__all__ = ["ConfigError", "load_pool_config", "main"]


class ConfigError(Exception):
    """A user-facing configuration problem; the message is printed as is."""


def _known_fields() -> list[str]:
    """Every YAML field name of the pool's config models, for "did you mean"."""
    names: set[str] = set()
    for value in vars(kv_models).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == kv_models.__name__:
            names.update(f.alias or name for name, f in value.model_fields.items())
    return sorted(names)


def _describe(err: ValidationError, source: str, block: str) -> str:
    """Problems of the `server:` block once command-line flags are merged in (no file lines to show)."""
    lines = [f"error: {source}: invalid KV pool configuration"]
    for item in err.errors():
        path = ".".join([block, *(str(x) for x in item["loc"])]) if block else ".".join(str(x) for x in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _known_fields(), n=1)
            message = "unknown field" + (f"; did you mean `{close[0]}`?" if close else "")
        lines.append(f"  {path}: {message}")
    lines.append("  expected: a KVPoolConfig document (server:, client:) as described in docs/kv.md")
    lines.append(f"  hint: {SIZE_HINT}; {FIELD_HINTS['policy']}")
    return "\n".join(lines)


SIZE_HINT = "sizes take bytes or quantities like 512Mi / 64Gi"
FIELD_HINTS = {"capacity": SIZE_HINT, "pageSize": SIZE_HINT, "policy": "eviction.policy is adaptive, s3fifo, lru or fifo"}


def load_pool_config(path: str | Path) -> KVPoolConfig:
    """Read and validate a KVPoolConfig YAML file; ConfigError carries the user message."""
    try:
        return load_model_file(
            path,
            KVPoolConfig,
            read_hint="pass the file the compiler wrote into the pool's ConfigMap (e.g. --config /etc/aibrix-kv/pool.yaml)",
            top_hint="a KVPoolConfig has `server:` and/or `client:` at the top; see docs/kv.md",
            field_hints=FIELD_HINTS,
        )
    except ConfigFileError as err:
        raise ConfigError(str(err)) from None


def _server_config(args: argparse.Namespace) -> KVServerConfig:
    base: dict[str, Any] = {}
    source = "command line"
    if args.config:
        pool = load_pool_config(args.config)
        if pool.server is None:
            raise ConfigError(f"error: {args.config}: no `server:` block\n"
                              "  hint: a pool member needs `server: {capacity: 8Gi}` at least")
        base = pool.server.model_dump(by_alias=True)
        source = args.config
    for flag, field in (("host", "host"), ("port", "port"), ("metrics_port", "metricsPort"), ("capacity", "capacity"),
                        ("page_size", "pageSize"), ("drain_seconds", "drainSeconds")):
        value = getattr(args, flag)
        if value is not None:
            base[field] = value
    if args.eviction is not None:
        base.setdefault("eviction", {})["policy"] = args.eviction
    if args.no_shm:
        base.setdefault("shm", {})["enabled"] = False
    try:
        return KVServerConfig.model_validate(base)
    except ValidationError as err:
        raise ConfigError(_describe(err, source, "server")) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aibrix-kv-server", description="Run one member of the distributed KV-cache pool.")
    parser.add_argument("--config", help="KVPoolConfig YAML file (its `server:` block is used)")
    parser.add_argument("--host", help="listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="block-protocol port (default 9600; 0 = any free port)")
    parser.add_argument("--metrics-port", type=int, help="HTTP port of /metrics and /healthz (default 9601)")
    parser.add_argument("--capacity", help="bytes of KV blocks held, e.g. 8Gi")
    parser.add_argument("--page-size", help="allocation unit, e.g. 64Ki")
    parser.add_argument("--eviction", help="adaptive (default), s3fifo, lru or fifo")
    parser.add_argument("--drain-seconds", type=float, help="how long in-flight requests may finish on SIGTERM")
    parser.add_argument("--no-shm", action="store_true", help="do not offer the same-node shared-memory path")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


async def _serve(config: KVServerConfig) -> None:
    stop = stop_event()  # before the "listening" line: a caller may signal at once
    server = KVServer(config)
    await server.start()
    # One line on stdout with the bound ports, so scripts using port 0 can find them.
    print(f"aibrix-kv-server listening port={server.port} metrics_port={server.metrics_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = _server_config(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config))
    except OSError as err:
        print(f"error: cannot start the pool member on {config.host}:{config.port}: {err.strerror or err}\n"
              f"  hint: pick a free port (--port 0 picks one) or a writable shm dir ({config.shm.dir}), or pass --no-shm",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
