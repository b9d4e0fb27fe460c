"""prefix-cache-aware: send a prompt where its prefix is probably cached already.

Where it sits: a ``Scorer`` with long-lived state (``base.Stateful``), the index of which
endpoint was sent which prompt blocks. The engine's KV cache itself is not visible to the
gateway, so the index records routing decisions, as AIBrix's prefix-cache router does.

Blocks: ``block_hashes(token_ids, block_size_tokens, salt=model[+adapter])`` from
``runtime_components.common.hashing``: chained hashes of full blocks, so block i's hash
stands for the whole prefix up to block i, and different models or adapters never match.

Score: ``match(e) = m_e / n`` where ``n`` is the prompt's number of full blocks and
``m_e`` the number of its *leading* blocks the index holds for ``e`` (0 for all when the
prompt has no full block). Load-imbalance guard: an endpoint whose
``load(e) - min_load > imbalance_threshold`` (``load.endpoint_load``) scores 0, so a hot
prefix cannot pile every request onto one pod; the other scorers of the profile (in the
preset, least-request) then decide.

Index: an LRU over (block hash, endpoint) pairs, at most ``max_index_blocks`` of them. A
routed prompt's blocks are touched deepest first, so a chain's root is the most recent and
is evicted last, as in vLLM's evictor (a chain without its root matches nothing).

Index modes (``index_mode``, the spec's ``index``): ``decisions`` records routing decisions as above. ``kv-events``
leaves ``index`` to the engines' KV events (``gateway.kv_events`` feeds it; the app swaps
in the model's shared one with ``use_event_index``) and records a decision only as a
provisional entry that expires ``provisional_ttl_s`` later (``provisional.py``); a
prompt's match on an endpoint is the larger of the two.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from runtime_components.common.hashing import block_hashes

from .load import endpoint_load
from .provisional import ProvisionalIndex
from .runner import PREFIX_MATCH_KEY
from .types import EndpointState, RequestOutcome, RouteRequest

if TYPE_CHECKING:
    from .pool import EndpointPool

__all__ = ["MAX_PREFIX_CANDIDATES", "PrefixCacheAwareScorer", "PrefixIndex", "use_event_index"]

#: At most this many prefix holders are scored per request (deepest matches first), so a prefix
#: every engine holds (a fleet-wide system prompt) does not make a decision scan the fleet.
MAX_PREFIX_CANDIDATES = 32


class PrefixIndex:
    """Which endpoints were sent which prefix blocks; LRU-bounded in (block, endpoint) pairs."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max = max_entries
        self._lru: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._holders: dict[int, set[str]] = {}

    def __len__(self) -> int:
        return len(self._lru)

    def add(self, hashes: Sequence[int], address: str) -> None:
        """Record that ``address`` was sent the blocks ``hashes`` (a chain, root first)."""
        for h in reversed(hashes):
            key = (h, address)
            if key in self._lru:
                self._lru.move_to_end(key)
            else:
                self._lru[key] = None
                self._holders.setdefault(h, set()).add(address)
        while len(self._lru) > self._max:
            (h, evicted), _ = self._lru.popitem(last=False)
            self._discard(h, evicted)

    def matched_blocks(self, hashes: Sequence[int], addresses: Sequence[str]) -> dict[str, int]:
        """For each address, how many leading blocks of ``hashes`` the index holds for it."""
        matched = dict.fromkeys(addresses, 0)
        alive = set(addresses)
        for depth, h in enumerate(hashes):
            holders = self._holders.get(h)
            alive = alive & holders if holders else set()
            if not alive:
                break
            for address in alive:
                matched[address] = depth + 1
        return matched

    def holders_deepest_first(self, hashes: Sequence[int], limit: int) -> list[str]:
        """Up to ``limit`` addresses holding some leading block of ``hashes``, deepest holders first."""
        found: dict[str, None] = {}
        for h in reversed(hashes):
            holders = self._holders.get(h)
            if not holders:
                continue
            for address in holders:
                if address not in found:
                    found[address] = None
                    if len(found) >= limit:
                        return list(found)
        return list(found)

    def remove(self, hashes: Sequence[int], address: str) -> None:
        """Forget that ``address`` holds ``hashes``."""
        for h in hashes:
            key = (h, address)
            if key in self._lru:
                del self._lru[key]
                self._discard(h, address)

    def forget(self, address: str) -> None:
        """Forget everything recorded for ``address``."""
        for key in [k for k in self._lru if k[1] == address]:
            del self._lru[key]
            self._discard(key[0], address)

    def _discard(self, h: int, address: str) -> None:
        holders = self._holders.get(h)
        if holders is not None:
            holders.discard(address)
            if not holders:
                del self._holders[h]


class PrefixCacheAwareScorer:
    """Scores endpoints by the fraction of the prompt's leading blocks they were sent before."""

    name = "prefix-cache-aware"
    shortlist_kind: Literal["sparse"] = "sparse"

    def __init__(self, block_size_tokens: int, max_index_blocks: int, imbalance_threshold: int, *,
                 index: PrefixIndex | None = None, index_mode: str = "decisions", provisional_ttl_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if block_size_tokens < 1:
            raise ValueError(f"block_size_tokens must be >= 1, got {block_size_tokens}")
        if index_mode not in ("decisions", "kv-events"):
            raise ValueError(f'index_mode must be "decisions" or "kv-events", got {index_mode!r}')
        self._block = block_size_tokens
        self._threshold = imbalance_threshold
        self.index_mode = index_mode
        #: decisions mode: the decisions index, shared with other routers (and, through
        #: routing_sync, other gateway processes) when given; kv-events mode: the model's
        #: event-fed index (``use_event_index``), with this router's decisions kept apart as
        #: short-lived provisional entries that are never shared.
        self.index = index if index is not None else PrefixIndex(max_index_blocks)
        self.provisional = (ProvisionalIndex(PrefixIndex(max_index_blocks), provisional_ttl_s, clock)
                            if index_mode == "kv-events" else None)

    @property
    def block_size_tokens(self) -> int:
        return self._block

    def _decisions(self) -> PrefixIndex | ProvisionalIndex:
        return self.index if self.provisional is None else self.provisional

    def hashes_of(self, req: RouteRequest) -> list[int]:
        """The prompt's chained block hashes, computed once per request (memoised in ``req.scratch``)."""
        salt = req.model if req.adapter is None else f"{req.model}+{req.adapter}"
        key = f"prefix_hashes:{self._block}:{salt}"
        cached = req.scratch.get(key)
        if cached is None:
            cached = block_hashes(req.token_ids, self._block, salt)
            req.scratch[key] = cached
        return cached

    def shortlist(self, req: RouteRequest, pool: EndpointPool, k: int) -> list[EndpointState]:
        """The endpoints holding the prompt's prefix (bounded, deepest first) plus the least
        loaded one, whose load the imbalance guard compares against."""
        hashes = self.hashes_of(req)
        out = pool.least_loaded(1)
        if hashes:
            holders = self.index.holders_deepest_first(hashes, MAX_PREFIX_CANDIDATES)
            if self.provisional is not None:  # kv-events mode: recent decisions count too
                holders += self.provisional.holders_deepest_first(hashes, MAX_PREFIX_CANDIDATES)
            for address in dict.fromkeys(holders):
                state = pool.get(address)
                if state is not None:
                    out.append(state)
        return out

    def score(self, req: RouteRequest, endpoints: Sequence[EndpointState]) -> Mapping[str, float]:
        hashes = self.hashes_of(req)
        if not hashes or not endpoints:
            return {e.address: 0.0 for e in endpoints}
        addresses = [e.address for e in endpoints]
        matched = self.index.matched_blocks(hashes, addresses)
        if self.provisional is not None:
            guessed = self.provisional.matched_blocks(hashes, addresses)
            matched = {a: max(m, guessed[a]) for a, m in matched.items()}
        fractions = {a: m / len(hashes) for a, m in matched.items()}
        req.scratch[PREFIX_MATCH_KEY] = fractions
        lowest = min(endpoint_load(e) for e in endpoints)
        return {
            e.address: fractions[e.address] if endpoint_load(e) - lowest <= self._threshold else 0.0
            for e in endpoints
        }

    def on_routed(self, req: RouteRequest, endpoint: EndpointState) -> None:
        self._decisions().add(self.hashes_of(req), endpoint.address)

    def on_finished(self, req: RouteRequest, endpoint: EndpointState, outcome: RequestOutcome) -> None:
        # A failed request may not have computed its blocks there; don't count on them.
        if not outcome.success:
            self._decisions().remove(self.hashes_of(req), endpoint.address)

    def on_endpoint_removed(self, address: str) -> None:
        self.index.forget(address)
        if self.provisional is not None:
            self.provisional.forget(address)


def use_event_index(plugins: Sequence[object], index: PrefixIndex) -> int:
    """Point every kv-events prefix scorer among ``plugins`` at ``index`` (the model's
    event-fed index, shared by all its routers); return how many were."""
    scorers = [p for p in plugins if isinstance(p, PrefixCacheAwareScorer) and p.provisional is not None]
    for scorer in scorers:
        scorer.index = index
    return len(scorers)
