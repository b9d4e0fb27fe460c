"""The package's public surface is exactly its __all__ (the gateway codes against it)."""

from __future__ import annotations

import runtime_components.gateway.policy as policy


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {name for name in vars(policy) if not name.startswith("_")}
    modules = {"base", "filters", "load", "pickers", "pool", "prefix", "provisional", "registry", "runner", "session", "state", "types"}
    assert set(policy.__all__) == public - modules


def test_interface_the_gateway_imports() -> None:
    for name in ("build_router", "RouteRequest", "EndpointState", "NoEndpointError", "RequestOutcome", "Router", "Decision"):
        assert name in policy.__all__
