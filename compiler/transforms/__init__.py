"""Pass 6, transform: list[Manifest] -> list[Manifest], the transformers in one listed order.

Each transformer is ``(plan, manifests) -> manifests`` and returns new objects. The order
matters and is written only here: namespace before labels (labels do not depend on it,
but the checksum transformer matches ConfigMaps by namespace), checksums after labels
(labels are not hashed, data is), key order and sorting last.
"""

from __future__ import annotations

from collections.abc import Callable

from ..manifest import Manifest
from ..plan import Plan
from .checksums import add_config_checksums
from .labels import add_labels
from .namespace import set_namespace
from .ordering import order_keys, sort_manifests

__all__ = ["TRANSFORMERS", "Transformer", "transform"]

Transformer = Callable[[Plan, list[Manifest]], list[Manifest]]

#: Every transformer, in the order they run.
TRANSFORMERS: tuple[tuple[str, Transformer], ...] = (
    ("namespace", set_namespace),
    ("labels", add_labels),
    ("config-checksums", add_config_checksums),
    ("key-order", order_keys),
    ("sort", sort_manifests),
)


def transform(plan: Plan, manifests: list[Manifest]) -> list[Manifest]:
    for _name, transformer in TRANSFORMERS:
        manifests = transformer(plan, manifests)
    return manifests
