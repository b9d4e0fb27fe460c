"""Discovery: where the endpoint table's members come from.

Each source calls ``publish(endpoints)`` with the complete current list whenever it changes;
the gateway replaces its table with it. ``static`` reads a YAML file (local use), ``kubernetes``
lists and watches pods by each model's label selector.
"""

from .static import EndpointsFileError, StaticDiscovery, load_endpoints_file

__all__ = ["EndpointsFileError", "StaticDiscovery", "load_endpoints_file"]
