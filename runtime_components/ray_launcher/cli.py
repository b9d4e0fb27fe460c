"""``aibrix-ray-launcher --expected-gpus N [--timeout S] -- ENGINE COMMAND...``

Connects to the local Ray head (``RAY_ADDRESS`` or ``auto``), waits until N GPUs are alive
in the cluster, then ``exec``s the engine command (so signals and the exit code are the
engine's). Exits 1 with a message naming what joined when the timeout passes.
"""

from __future__ import annotations

import argparse
import os
import sys

from .wait import wait_for_gpus

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aibrix-ray-launcher", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--expected-gpus", type=int, required=True, help="GPUs the engine needs (tensor x pipeline)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the workers (default 900)")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between checks")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"), help="Ray address (default: auto)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the engine command")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the engine command after --")
    if args.expected_gpus < 1:
        ap.error("--expected-gpus must be at least 1")

    import ray  # heavy: only the head pod of a multi-node model runs this

    ray.init(address=args.address, logging_level="ERROR")

    def report(gpus: float, alive: int) -> None:
        print(f"aibrix-ray-launcher: {alive} node(s) alive, {gpus:g}/{args.expected_gpus} GPUs", file=sys.stderr, flush=True)

    result = wait_for_gpus(args.expected_gpus, ray.nodes, timeout_s=args.timeout, poll_s=args.poll, progress=report)
    ray.shutdown()
    if not result.ready:
        print(
            f"error: only {result.gpus:g} of {args.expected_gpus} GPUs joined in {result.waited_s:.0f}s "
            f"({result.alive_nodes} node(s) alive); check the worker pods' logs and their GPU requests",
            file=sys.stderr,
        )
        return 1
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 0  # not reached: exec replaced the process


if __name__ == "__main__":
    sys.exit(main())
