"""Opt-in Kubernetes actions: a node condition every pass, and a taint while checks fail.

Through the official `kubernetes` client (CoreV1Api), three calls and nothing else, so the
RBAC rule is `nodes: get, patch` and `nodes/status: patch`:

- read_node (GET /api/v1/nodes/{name}) to learn the current condition and taints;
- patch_node_status (PATCH .../status, strategic merge) with one condition, merged by `type`:
  status True on fail, False on ok/warn, Unknown without NVML. lastTransitionTime changes only
  when the status does; lastHeartbeatTime every pass;
- patch_node (PATCH, JSON merge patch) with the whole `spec.taints` list plus
  `metadata.resourceVersion`, so a concurrent change answers 409 and is retried on fresh state
  (taints have no merge key: the list is replaced).

Hysteresis: taint after `failuresBeforeTaint` consecutive failing passes, untaint after
`passesBeforeUntaint` consecutive passes without a failure; a pass without NVML changes
neither count. Only the configured taint key is ever touched.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from aibrix_spec.components.diag import NodeActions
from runtime_components.diag.report import Report, Status

__all__ = ["NodeReporter", "build_core_api"]

log = logging.getLogger("aibrix.diag.node")
_CONFLICT_RETRIES = 3


def build_core_api(kubeconfig: str | None) -> Any:
    """CoreV1Api from a kubeconfig file, or from the pod's service account when None."""
    from kubernetes import client, config

    if kubeconfig:
        return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.CoreV1Api()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NodeReporter:
    """Turns each report into the node's condition and taint."""

    def __init__(
        self, api: Any, node_name: str, actions: NodeActions, *, now: Callable[[], dt.datetime] = _utc_now
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.actions = actions
        self._now = now
        self.consecutive_failures = 0
        self.consecutive_passes = 0
        self.errors = 0  # failed API calls, exported as a metric

    def apply(self, report: Report) -> None:
        """Update counters, then the condition and the taint; API errors are logged and counted."""
        if report.nvml_available:
            failing = report.status == Status.FAIL.label
            self.consecutive_failures = self.consecutive_failures + 1 if failing else 0
            self.consecutive_passes = 0 if failing else self.consecutive_passes + 1
        from kubernetes.client.exceptions import ApiException

        try:
            if self.actions.set_condition:
                self._set_condition(report)
            if self.actions.taint_on_failure:
                self._update_taint()
        except ApiException as error:
            self.errors += 1
            log.warning("updating node %s failed: %s %s", self.node_name, error.status, error.reason)

    def _set_condition(self, report: Report) -> None:
        node = self.api.read_node(self.node_name)
        status = {"fail": "True", "no-nvml": "Unknown"}.get(report.status, "False")
        now = self._now()
        previous = next((c for c in (node.status.conditions or []) if c.type == self.actions.condition_type), None)
        transition = previous.last_transition_time if previous is not None and previous.status == status else now
        failing = sorted({r.check for r in report.results if r.status is Status.FAIL})
        reason, message = {
            "True": (
                "GpuCheckFailed",
                f"failing checks: {', '.join(failing)}; run aibrix-diag on the node for details",
            ),
            "Unknown": ("NvmlUnavailable", f"NVML could not be loaded: {report.nvml_error}"),
        }.get(status, ("GpuChecksPassed", f"GPU checks pass ({report.status})"))
        condition = {
            "type": self.actions.condition_type,
            "status": status,
            "reason": reason,
            "message": message[:1024],
            "lastHeartbeatTime": _rfc3339(now),
            "lastTransitionTime": _rfc3339(transition),
        }
        self.api.patch_node_status(
            self.node_name,
            {"status": {"conditions": [condition]}},
            _content_type="application/strategic-merge-patch+json",
        )

    def _update_taint(self) -> None:
        from kubernetes.client.exceptions import ApiException

        want: bool | None = None  # None: keep whatever is there
        if self.consecutive_failures >= self.actions.failures_before_taint:
            want = True
        elif self.consecutive_passes >= self.actions.passes_before_untaint:
            want = False
        if want is None:
            return
        for attempt in range(_CONFLICT_RETRIES):
            node = self.api.read_node(self.node_name)
            taints = [self.api.api_client.sanitize_for_serialization(t) for t in (node.spec.taints or [])]
            ours = [t for t in taints if t["key"] == self.actions.taint_key]
            if want == bool(ours) and all(t["effect"] == self.actions.taint_effect for t in ours):
                return
            others = [t for t in taints if t["key"] != self.actions.taint_key]
            if want:
                others.append(
                    {
                        "key": self.actions.taint_key,
                        "value": "true",
                        "effect": self.actions.taint_effect,
                        "timeAdded": _rfc3339(self._now()),
                    }
                )
            body = {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": others}}
            try:
                self.api.patch_node(self.node_name, body, _content_type="application/merge-patch+json")
                log.warning(
                    "%s taint %s on node %s", "added" if want else "removed", self.actions.taint_key, self.node_name
                )
                return
            except ApiException as error:
                if error.status != 409 or attempt == _CONFLICT_RETRIES - 1:
                    raise


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
