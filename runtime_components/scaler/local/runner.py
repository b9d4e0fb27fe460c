"""`aibrix-scaler local`: the scaler, a local API server and real simulated engines, in one command.

Every engine-source target's Deployment lives in the in-memory API server
(`runtime_components.common.fake_kube`);
each of its pods is an `aibrix-engine-sim` process started by `SubprocessLauncher` on a free
loopback port, Ready after `--startup-delay` more seconds. The controller runs unchanged
against that API (through the official kubernetes client). An optional `--ramp` drives
closed-loop load (`load.py`) at the first target; once a second the runner prints a status
line per target: spec and ready replicas, the newest metric total, the last decision.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

from aibrix_spec.components.scaler import ScalerConfig
from runtime_components.common.fake_kube import PORT_LABEL, FakeKubeApi, Workload
from runtime_components.common.shutdown import stop_event
from runtime_components.scaler.config import ConfigError
from runtime_components.scaler.controller import Controller
from runtime_components.scaler.kube import KubeApi, connect
from runtime_components.scaler.local.launcher import SubprocessLauncher
from runtime_components.scaler.local.load import ClosedLoopLoad

__all__ = ["parse_ramp", "run_local", "write_kubeconfig"]


def parse_ramp(text: str) -> list[tuple[float, int]]:
    """`"0:4,60:16,150:4"` -> [(0, 4), (60, 16), (150, 4)]: from second t on, n clients."""
    steps: list[tuple[float, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        at, sep, count = part.partition(":")
        try:
            step = (float(at), int(count))
        except ValueError:
            step = (-1.0, -1)
        if not sep or step[0] < 0 or step[1] < 0 or (steps and step[0] <= steps[-1][0]):
            raise ConfigError(f"error: --ramp {text!r}: bad step {part!r}\n"
                              "  expected: SECONDS:CLIENTS pairs with increasing seconds, e.g. 0:4,60:16,150:4")
        steps.append(step)
    return steps


def write_kubeconfig(path: Path, api_url: str) -> None:
    """A kubeconfig for the local API server (plain HTTP, no credentials), written atomically."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": api_url}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
        "users": [{"name": "local", "user": {}}],
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(config, indent=2))  # JSON is YAML: any kubeconfig reader takes it
    partial.replace(path)


def engine_command(model: str, accelerator: str, extra: list[str]) -> list[str]:
    """The per-pod engine process: one simulated engine on the port the launcher picked."""
    return [sys.executable, "-m", "runtime_components.engine_sim.cli", "--engines", "1",
            "--base-port", "{port}", "--model", model, "--accelerator", accelerator, *extra]


async def run_local(
    config: ScalerConfig,
    *,
    startup_delay: float,
    initial_replicas: int,
    duration: float | None,
    ramp: list[tuple[float, int]] | None = None,
    model: str = "llama-3-8b",
    accelerator: str = "nvidia-a100-80gb",
    engine_args: list[str] | None = None,
    kubeconfig_out: Path | None = None,
) -> int:
    targets = [t for t in config.targets if t.metric.source == "engine"]
    if not targets:
        raise ConfigError("error: `local` needs at least one target with metric.source engine "
                          "(the local API server runs engines, not the optimizer)")
    cluster = FakeKubeApi()
    launchers = []
    for t in targets:
        launcher = SubprocessLauncher(engine_command(model, accelerator, engine_args or []),
                                      startup_delay=startup_delay)
        launchers.append(launcher)
        ref = t.scale_target_ref
        cluster.add_workload(Workload(ref.namespace, ref.name, dict(t.pod_selector), initial_replicas, launcher))
    from aiohttp import web

    runner = web.AppRunner(cluster.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    api_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(f"local API server: {api_url} (kubectl-free; deployments {[t.scale_target_ref.name for t in targets]})",
          flush=True)
    if kubeconfig_out is not None:
        write_kubeconfig(kubeconfig_out, api_url)
    api = connect(api_url=api_url)
    controller = Controller(config, KubeApi(api), identity="local")
    stop = stop_event(duration)
    for workload in cluster.workloads.values():
        await cluster.reconcile(workload)
    first = targets[0]

    def endpoints() -> list[str]:
        return [f"http://127.0.0.1:{pod['metadata']['labels'][PORT_LABEL]}" for (ns, _), pod in cluster.pods.items()
                if ns == first.scale_target_ref.namespace and pod["status"]["phase"] == "Running"
                and all(pod["metadata"]["labels"].get(k) == v for k, v in first.pod_selector.items())]

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        load = ClosedLoopLoad(endpoints, session, model=model)
        control = asyncio.create_task(controller.run(stop))
        try:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                wanted = 0  # before the ramp's first step: no load
                for at, clients in ramp or []:
                    if elapsed >= at:
                        wanted = clients
                if ramp:
                    load.set_concurrency(wanted)
                _print_status(cluster, controller, elapsed, load)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            await load.stop()
            stop.set()
            await asyncio.gather(control, return_exceptions=True)
            await runner.cleanup()  # stops every pod's engine process
            for launcher in launchers:
                await launcher.stop_all()
            api.close()
    print(f"done: {load.completed} requests completed, {load.failed} failed", flush=True)
    return 0


def _print_status(cluster: FakeKubeApi, controller: Controller, elapsed: float, load: ClosedLoopLoad) -> None:
    for name, state in controller.targets.items():
        ref = state.spec.scale_target_ref
        workload = cluster.workloads[(ref.namespace, ref.name)]
        ready = sum(1 for (ns, _), pod in cluster.pods.items() if ns == ref.namespace
                    and pod["status"]["phase"] == "Running"
                    and all(pod["metadata"]["labels"].get(k) == v for k, v in state.spec.pod_selector.items()))
        decision = state.last_decision
        last = f"{decision.desired} ({decision.reason})" if decision else "none yet"
        total = controller.metrics.registry.get_sample_value("aibrix_scaler_metric_total", {"target": name})
        shown = "n/a" if total is None else f"{total:.1f}"
        print(f"t={elapsed:6.1f}s {name}: clients {load.concurrency:3d}  replicas spec {workload.replicas} "
              f"ready {ready}  {state.spec.metric.display} total {shown}  last decision {last}", flush=True)
