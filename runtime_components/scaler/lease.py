"""Leader election over a coordination.k8s.io/v1 Lease: one active scaler at a time.

A replica is leader while the Lease names it and it renews before `leaseDurationSeconds`
run out. Another replica takes the Lease over only when `renewTime + leaseDurationSeconds`
lies in the past. Writes carry the read `resourceVersion`, so of two replicas racing for an
expired Lease the API server accepts one and answers 409 Conflict to the other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from kubernetes import client as k8s

from aibrix_spec.components.scaler import LeaderElection
from runtime_components.scaler.kube import KubeApi

__all__ = ["LeaderElector"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    """Acquire or renew the Lease; `is_leader` says whether this replica may act."""

    def __init__(
        self,
        kube: KubeApi,
        settings: LeaderElection,
        identity: str,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._identity = identity
        self._now = now
        self.is_leader = not settings.enabled

    async def try_acquire_or_renew(self) -> bool:
        """One election round; returns (and stores) whether this replica now leads."""
        if not self._settings.enabled:
            self.is_leader = True
            return True
        try:
            self.is_leader = await self._round()
        except k8s.ApiException as error:
            if error.status != 409:
                self.is_leader = False
                raise
            self.is_leader = False
        return self.is_leader

    async def _round(self) -> bool:
        s = self._settings
        now = self._now()
        lease = await self._kube.read_lease(s.namespace, s.lease_name)
        if lease is None:
            await self._kube.create_lease(s.namespace, self._lease(now, acquire_time=now, transitions=0))
            return True
        spec = lease.spec if lease.spec is not None else k8s.V1LeaseSpec()
        version = lease.metadata.resource_version if lease.metadata is not None else None
        holder = spec.holder_identity
        if holder == self._identity:
            fresh = self._lease(now, acquire_time=spec.acquire_time or now, transitions=spec.lease_transitions or 0,
                                resource_version=version)
            await self._kube.replace_lease(s.namespace, s.lease_name, fresh)
            return True
        renewed = spec.renew_time
        duration = spec.lease_duration_seconds or s.lease_duration_seconds
        if holder and renewed is not None and renewed + dt.timedelta(seconds=duration) > now:
            return False
        taken = self._lease(now, acquire_time=now, transitions=(spec.lease_transitions or 0) + 1,
                            resource_version=version)
        await self._kube.replace_lease(s.namespace, s.lease_name, taken)
        return True

    def _lease(
        self, now: dt.datetime, *, acquire_time: dt.datetime, transitions: int, resource_version: str | None = None
    ) -> k8s.V1Lease:
        s = self._settings
        metadata: dict[str, str] = {"name": s.lease_name, "namespace": s.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        lease = k8s.V1Lease.from_dict(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": metadata,
                "spec": {
                    "holderIdentity": self._identity,
                    "leaseDurationSeconds": s.lease_duration_seconds,
                    "acquireTime": _micro(acquire_time),
                    "renewTime": _micro(now),
                    "leaseTransitions": transitions,
                },
            }
        )
        if lease is None:
            raise ValueError("could not build the Lease object")
        return lease


def _micro(moment: dt.datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
