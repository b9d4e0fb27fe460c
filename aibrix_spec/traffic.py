"""Weighted traffic splits: one OpenAI model name served by several models (canaries, blue-green).

Used twice with the same shape: in the stack (``spec.routes``, targets name stack models) and
in the gateway's hot-reloaded routes file (targets name served model names; the compiler
translates). Weights are relative (95/5 and 19/1 are the same split).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import SpecModel

__all__ = ["RouteSpec", "RouteTarget", "RoutesFile", "StickyMode"]

StickyMode = Literal["none", "user", "session"]

_OPENAI_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class RouteTarget(SpecModel):
    """One model a route sends a share of its requests to."""

    model: str = Field(..., min_length=1, description="The model (a spec.models name) receiving this share.")
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = Field(
        ..., description="Relative share of the route's requests (> 0; weights need not sum to 100)."
    )


class RouteSpec(SpecModel):
    """An OpenAI model name whose requests are split between models by weight."""

    name: str = Field(..., pattern=_OPENAI_NAME, description='The OpenAI "model" name clients send.')
    sticky: StickyMode = Field(
        "none",
        description="none: every request is split on its own; user: an API key keeps its target; "
        "session: a session (sessionHeader) keeps its target. A sticky client moves only when weights change.",
    )
    session_header: str = Field("x-session-id", min_length=1, description="Header naming the session (sticky: session).")
    targets: Annotated[list[RouteTarget], Field(min_length=1, max_length=16)] = Field(
        ..., description="The models and their weights."
    )

    @model_validator(mode="after")
    def _targets_unique(self) -> RouteSpec:
        seen: set[str] = set()
        for target in self.targets:
            if target.model in seen:
                raise ValueError(f'route "{self.name}" lists target "{target.model}" twice; give it one weight')
            seen.add(target.model)
        return self


class RoutesFile(SpecModel):
    """The gateway's routes file (``routesFile``), reloaded while the gateway runs."""

    routes: list[RouteSpec] = Field(default_factory=list, description="Weighted routes.")
