"""Flow control: per-model queues that hold requests until an engine has room (docs/gateway.md).

``saturation`` says how many more requests each engine may take, ``fairness`` orders users
inside a priority band, ``queue`` holds the bands of one model, ``controller`` dispatches and
sheds, ``metrics`` exports depth, waits, sheds and cold-start holds.
"""

from .controller import PRIORITY_HEADER, FlowController, StatesFn, engine_priority, table_states
from .metrics import FlowMetrics

__all__ = ["PRIORITY_HEADER", "FlowController", "FlowMetrics", "StatesFn", "engine_priority", "table_states"]
