"""Weighted routes: one OpenAI model name split between models, re-read while running.

Where it sits: ``GatewayCore.admit`` asks ``RouteTable.pick(name, user, headers)`` before it
resolves the model; a route name comes back as one of its targets, any other name as itself.
The target's own routing policy then picks the pod.

How a request gets its target:

- ``sticky: none``: smooth weighted round robin (each target's credit grows by its weight
  every request, the largest credit is chosen and pays the total), so any window of requests
  is within one request of the weights: no sampling noise, even at 5%.
- ``sticky: user`` (the API key's user) / ``session`` (the session header): a new client goes
  to the target furthest below its share of the clients placed so far, then keeps it. Clients,
  not requests, are balanced: a client's future volume is unknown, and counting requests so
  far would over-fill the target that late-coming clients land on (measured: 12.0% instead of
  10%). The split in requests is then exact when clients send alike, and off by the spread
  of their volumes otherwise. When the weights change, each client is placed once more on
  its next request: it moves only if its target now holds more than its share of the clients
  placed under the new weights and another holds less (so 90/10 -> 50/50 moves about 4 in 9 of
  the first target's clients, and none of the second's). A client without an identity
  (anonymous traffic, no session header) is split per request. The client table is a
  ``SessionTable`` from the gateway's ``RoutingState``, so replicas and workers that share
  routing state (``routing_sync``) agree on it; its entries carry the weights' fingerprint.

Reload: ``replace(routes)`` keeps the state of routes whose weights did not change; a route
whose weights changed starts counting afresh. The file is re-read when its stamp moves
(``GatewayApp``); a broken file keeps the previous routes and reports why on /healthz.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from aibrix_spec.traffic import RoutesFile, RouteSpec
from runtime_components.common.config_file import ConfigFileError, load_model_file

from .policy.session import SessionTable
from .policy.state import RoutingState
from .users import ANONYMOUS, User

__all__ = ["MAX_STICKY_CLIENTS", "RouteTable", "RoutesFileError", "load_routes"]

MAX_STICKY_CLIENTS = 200_000  #: per route; the least recently seen are forgotten first


class RoutesFileError(ValueError):
    """The routes file cannot be used; the message names the file and the problem."""


def load_routes(path: str, models: set[str]) -> list[RouteSpec]:
    """Read and check a routes file: targets must be served models, names must not hide one."""
    try:
        routes = load_model_file(path, RoutesFile).routes
    except ConfigFileError as exc:
        raise RoutesFileError(str(exc)) from None
    seen: set[str] = set()
    for i, route in enumerate(routes):
        where = f"{path}: routes[{i}] ({route.name})"
        if route.name in seen:
            raise RoutesFileError(f"{where}: the route name is used twice")
        seen.add(route.name)
        targets = [t.model for t in route.targets]
        unknown = [t for t in targets if t not in models]
        if unknown:
            raise RoutesFileError(f'{where}: unknown target model "{unknown[0]}"; served: {", ".join(sorted(models))}')
        if route.name in models and route.name not in targets:
            raise RoutesFileError(f'{where}: the route would hide model "{route.name}", which is not among its targets')
    return routes


def _fingerprint(route: RouteSpec) -> str:
    text = "|".join(f"{t.model}={t.weight!r}" for t in route.targets)
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


@dataclass
class _Route:
    spec: RouteSpec
    fingerprint: str
    clients: SessionTable
    shares: list[tuple[str, float]]  # (target, weight / total)
    credit: dict[str, float] = field(default_factory=dict)  # smooth weighted round robin
    placed: dict[str, int] = field(default_factory=dict)  # sticky clients placed per target under these weights
    placed_total: int = 0

    def _round_robin(self) -> str:
        best, best_credit = "", float("-inf")
        for target, share in self.shares:
            credit = self.credit.get(target, 0.0) + share
            self.credit[target] = credit
            if credit > best_credit:
                best, best_credit = target, credit
        self.credit[best] -= 1.0
        return best

    def _deficit(self, target: str, share: float) -> float:
        return share * (self.placed_total + 1) - self.placed.get(target, 0)

    def _most_behind(self) -> str:
        return max(self.shares, key=lambda ts: self._deficit(*ts))[0]

    def pick(self, client: str | None) -> str:
        if client is None:
            return self._round_robin()
        entry = self.clients.get(client)
        target, _, print_ = entry.partition("|") if entry else ("", "", "")
        if print_ == self.fingerprint:
            return target  # placed under the weights in force: it stays
        shares = dict(self.shares)
        if target not in shares:
            target = self._most_behind()  # a new client, or its target left the route
        elif self._deficit(target, shares[target]) < 0:
            behind = self._most_behind()
            if self._deficit(behind, shares[behind]) > 0:
                target = behind  # the weights changed and its target now holds more than its share
        self.clients.bind(client, f"{target}|{self.fingerprint}")
        self.placed[target] = self.placed.get(target, 0) + 1
        self.placed_total += 1
        return target


class RouteTable:
    """The routes in force; ``pick`` maps a route name to one of its targets."""

    def __init__(self, state: RoutingState) -> None:
        self._state = state
        self._routes: dict[str, _Route] = {}

    def names(self) -> list[str]:
        return sorted(self._routes)

    def targets(self, name: str) -> list[str]:
        route = self._routes.get(name)
        return [t.model for t in route.spec.targets] if route is not None else []

    def weights(self, name: str) -> dict[str, float]:
        """The route's targets and weights in force (for /healthz)."""
        route = self._routes.get(name)
        return {t.model: t.weight for t in route.spec.targets} if route is not None else {}

    def replace(self, routes: list[RouteSpec]) -> None:
        """Put ``routes`` in force; routes whose weights did not change keep their counts."""
        fresh: dict[str, _Route] = {}
        for spec in routes:
            old = self._routes.get(spec.name)
            fingerprint = _fingerprint(spec)
            if old is not None and old.fingerprint == fingerprint and old.spec.sticky == spec.sticky:
                old.spec = spec
                fresh[spec.name] = old
                continue
            total = sum(t.weight for t in spec.targets)
            header = spec.session_header.lower() if spec.sticky == "session" else spec.sticky
            clients = self._state.session_table(f"route:{spec.name}", f"sticky:{header}", MAX_STICKY_CLIENTS)
            fresh[spec.name] = _Route(spec, fingerprint, clients, [(t.model, t.weight / total) for t in spec.targets])
        self._routes = fresh

    def pick(self, name: str, user: User, headers: Mapping[str, str]) -> str | None:
        """The target for a request naming ``name``; None when ``name`` is not a route."""
        route = self._routes.get(name)
        if route is None:
            return None
        client: str | None = None
        if route.spec.sticky == "user" and user.name != ANONYMOUS.name:
            client = user.name
        elif route.spec.sticky == "session":
            client = headers.get(route.spec.session_header.lower()) or None
        return route.pick(client)
