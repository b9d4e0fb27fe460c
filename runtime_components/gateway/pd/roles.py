"""Where a disaggregated model's prefill pods live in the gateway's endpoint table.

The endpoint table keeps one pool per key. A model's decode pods (its ``selector``) stay
under the model's name, so everything that reads a model's pool (routing, flow control,
scraping, gauges) sees the decode pool unchanged; its prefill pods (``prefillSelector``) are
kept under :func:`prefill_pool`, a key no served model takes (the gateway refuses a model
name ending in the suffix, :func:`check_names`).
"""

from __future__ import annotations

from aibrix_spec.components.gateway import GatewayModelSpec

__all__ = ["PREFILL_SUFFIX", "PdConfigError", "check_names", "prefill_pool", "role_specs"]

PREFILL_SUFFIX = "#prefill"


class PdConfigError(ValueError):
    """A disaggregation setting the gateway cannot serve; the message says which and why."""


def prefill_pool(model: str) -> str:
    """The endpoint-table key of ``model``'s prefill pods."""
    return model + PREFILL_SUFFIX


def role_specs(models: list[GatewayModelSpec]) -> list[GatewayModelSpec]:
    """One spec per pool to discover: each model (its decode pods, or all its pods), then for
    each disaggregated model a copy named :func:`prefill_pool` that selects its prefill pods on
    their port. Kubernetes discovery watches each; the scraper reads each in its engine's dialect."""
    out = list(models)
    for model in models:
        pd = model.disaggregation
        if pd is not None:
            out.append(model.model_copy(update={
                "name": prefill_pool(model.name), "selector": pd.prefill_selector, "port": pd.prefill_port,
                "adapters": [], "disaggregation": None,
            }))
    return out


def check_names(models: list[GatewayModelSpec]) -> None:
    """Refuse a model name that would collide with a prefill pool's key."""
    for model in models:
        if model.name.endswith(PREFILL_SUFFIX):
            raise PdConfigError(f'model "{model.name}": a model name must not end in "{PREFILL_SUFFIX}" (the gateway '
                             "keeps disaggregated models' prefill pods under that key); rename the model")
