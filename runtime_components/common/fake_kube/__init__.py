"""One in-memory fake of the Kubernetes API, for the scaler's local runner and every test.

``FakeKubeApi`` (``server.py``) holds pods, nodes, Deployments (scale subresource), leases and
events and serves them over the real HTTP API; ``objects.py`` builds the objects and implements
selectors and patches; ``ThreadedServer`` (``thread.py``) serves it for synchronous callers.
Needs aiohttp (every component that uses it has it).
"""

from .objects import node_object, pod_object
from .server import PORT_LABEL, FakeKubeApi, PodLauncher, ReadyAtOnce, Recorded, Workload
from .thread import ThreadedServer

__all__ = [
    "PORT_LABEL",
    "FakeKubeApi",
    "PodLauncher",
    "ReadyAtOnce",
    "Recorded",
    "ThreadedServer",
    "Workload",
    "node_object",
    "pod_object",
]
