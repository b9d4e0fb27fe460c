"""The sidecar's loop: every ``resync_seconds``, compute this pod's share of the adapters
from the ready-pod set and reconcile the engine with it; report the outcome as JSON log
lines, Prometheus gauges and ``GET /status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

from aibrix_spec.components.sidecar import SidecarConfig

from .artifacts import ArtifactError, Downloader, FetchOptions, resolve_lora_path
from .engine_client import EngineClient
from .placement import AdapterDemand, place_adapters
from .pods import PodLister
from .reconciler import Reconciler, ReconcileReport, RetryPolicy

__all__ = ["Sidecar"]

log = logging.getLogger("aibrix.sidecar")


class Sidecar:
    def __init__(
        self,
        config: SidecarConfig,
        *,
        pod_name: str,
        engine: EngineClient,
        pods: PodLister,
        clock: Callable[[], float] = time.monotonic,
        downloader: Downloader | None = None,
    ) -> None:
        self.config = config
        self.downloader = downloader or Downloader(config.artifact_dir)
        self.pod_name = pod_name
        self.pods = pods
        retry = RetryPolicy(config.retry.base_delay_seconds, config.retry.max_delay_seconds, config.retry.max_attempts)
        self.reconciler = Reconciler(engine, max_loras=config.max_loras, retry=retry, clock=clock)
        self.last_report: ReconcileReport | None = None
        self.last_share: tuple[str, ...] = ()
        self.unplaced: dict[str, int] = {}
        self.artifact_errors: dict[str, str] = {}

    def my_share(self, ready: list[str]) -> tuple[str, ...]:
        placement = place_adapters(
            [AdapterDemand(a.name, a.replicas) for a in self.config.adapters], ready, self.config.max_loras
        )
        self.unplaced = dict(placement.unplaced)
        return placement.per_pod.get(self.pod_name, ())

    async def run_once(self) -> ReconcileReport:
        ready = self.pods.ready_pods()
        share = self.my_share(ready)
        adapters = {a.name: a for a in self.config.adapters}
        desired: dict[str, str] = {}
        self.artifact_errors = {}
        for name in share:
            a = adapters[name]
            options = FetchOptions(a.endpoint, a.token_file, a.docker_config, self.config.download_timeout_seconds)
            try:
                desired[name] = await asyncio.to_thread(resolve_lora_path, name, a.uri, self.downloader, options)
            except ArtifactError as exc:
                self.artifact_errors[name] = str(exc)
        report = await self.reconciler.reconcile(desired)
        self.last_report, self.last_share = report, share
        self._log(report)
        return report

    def status(self) -> dict[str, object]:
        report = asdict(self.last_report) if self.last_report else None
        return {
            "pod": self.pod_name,
            "share": list(self.last_share),
            "report": report,
            "unplaced": self.unplaced,
            "artifactErrors": self.artifact_errors,
        }

    def _log(self, report: ReconcileReport) -> None:
        event = {"event": "reconciled", "pod": self.pod_name, **asdict(report)}
        if self.unplaced:
            event["unplaced"] = self.unplaced
        if self.artifact_errors:
            event["artifact_errors"] = self.artifact_errors
        print(json.dumps(event, sort_keys=True, default=list), file=sys.stderr, flush=True)

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # a pass must never kill the sidecar; the next pass retries
                log.error("reconcile pass failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.config.resync_seconds)
            except TimeoutError:
                pass
