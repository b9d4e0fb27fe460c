"""One model's queue: priority bands (highest first), fairness inside a band, then arrival."""

from __future__ import annotations

from collections.abc import Callable

from .fairness import Fairness, Held, build_fairness

__all__ = ["ModelQueue"]


class ModelQueue:
    """Bands keyed by priority; each band orders its users with the configured fairness."""

    def __init__(self, fairness: str) -> None:
        self._fairness = fairness
        self._bands: dict[int, Fairness] = {}
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def push(self, item: Held) -> None:
        band = self._bands.get(item.priority)
        if band is None:
            band = self._bands[item.priority] = build_fairness(self._fairness)
        band.push(item)

    def peek(self) -> Held:
        """The request ``pop`` would return, left in place."""
        priority = max(p for p, band in self._bands.items() if len(band))
        return self._bands[priority].peek()

    def pop(self) -> Held:
        """The next request to dispatch: from the highest non-empty band."""
        priority = max(p for p, band in self._bands.items() if len(band))
        return self._bands[priority].pop()

    def first_of(self, wanted: Callable[[str], bool]) -> Held | None:
        """The first request, in the top band's fair order, of a user ``wanted`` accepts (a light
        user's request that may pass a heavy user's head without room); None if there is none."""
        priority = max(p for p, band in self._bands.items() if len(band))
        band = self._bands[priority]
        for flow in band.in_order():
            if wanted(flow):
                return band.peek_flow(flow)
        return None

    def take(self, item: Held) -> None:
        """Dispatch ``item``, the head of its user in the top band (from ``first_of``)."""
        self._bands[item.priority].pop_flow(item.flow)

    def flows(self) -> set[str]:
        """Users with a request held (any band)."""
        return {flow for band in self._bands.values() for flow in band.flows()}

    def remove(self, item: Held) -> bool:
        band = self._bands.get(item.priority)
        return band is not None and band.remove(item)

    def lowest(self) -> Held | None:
        """The request to shed first: the newest arrival of the lowest non-empty band."""
        present = [p for p, band in self._bands.items() if len(band)]
        if not present:
            return None
        return self._bands[min(present)].newest()

    def depth(self) -> dict[int, int]:
        """Held requests per priority band (bands seen so far, empty ones included)."""
        return {p: len(band) for p, band in sorted(self._bands.items())}

    def __len__(self) -> int:
        return sum(len(band) for band in self._bands.values())
