"""Simulated vLLM engine: roofline performance model, stepped engine core, discrete-event
simulator and (in ``server``) an OpenAI/Prometheus HTTP front end.

The pure parts import nothing heavy, so benchmarks and the optimizer can use them::

    from runtime_components.engine_sim import EngineConfig, EngineCore, SimRequest, Simulation
"""

from .config import (
    AdapterError,
    EngineConfig,
    EngineError,
    ExternalKVStore,
    RequestRejected,
    SimRequest,
    StepResult,
    TokenEvent,
    UnknownAdapterError,
    prefix_salt,
)
from .core import EngineCore
from .des import EngineView, LatencySummary, RequestRecord, Simulation, Summary, percentile, summarize
from .perf import DEFAULT_EFFICIENCY, Efficiency, PrefillChunk, RooflineModel, StepCost
from .stats import EngineStats

__all__ = [
    "AdapterError",
    "DEFAULT_EFFICIENCY",
    "Efficiency",
    "EngineConfig",
    "EngineCore",
    "EngineError",
    "EngineStats",
    "EngineView",
    "ExternalKVStore",
    "LatencySummary",
    "PrefillChunk",
    "RequestRecord",
    "RequestRejected",
    "RooflineModel",
    "SimRequest",
    "Simulation",
    "StepCost",
    "StepResult",
    "Summary",
    "TokenEvent",
    "UnknownAdapterError",
    "percentile",
    "prefix_salt",
    "summarize",
]
