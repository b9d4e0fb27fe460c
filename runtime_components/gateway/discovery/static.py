"""Static discovery: a YAML file of endpoints, re-read when it changes.

Format::

    endpoints:
      - address: 127.0.0.1:8001     # ip:port of an engine's HTTP server
        model: llama-3-8b           # a model named in the gateway config
        pod: engine-a               # optional display name (defaults to the address)
        adapters: [sql-lora]        # optional adapters it holds (scraping /v1/models adds more)
        kvEventsPort: 5557          # optional: its KV-event publisher's port (else the model's kvEventsPort)
        role: prefill               # optional, disaggregated models: prefill or decode (the default)

The JSON list that ``aibrix-engine-sim --endpoints-file`` writes (objects with ``host``,
``port``, ``model``, ``index`` and optionally ``kv_events_port`` and ``pd_role``) is accepted
as it is, so a local gateway can watch it.

A prefill endpoint is kept under its model's prefill key (``pd.prefill_pool``), apart from
the model's decode endpoints.

The file is polled (mtime and size) every ``poll_interval_s``; a broken edit keeps the previous
endpoints and logs the error, so a half-written file never empties the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from runtime_components.common.config_file import ConfigFileError, read_yaml_file
from runtime_components.common.file_stamp import FileStamp, file_stamp

from ..endpoints import DiscoveredEndpoint
from ..pd.roles import prefill_pool

__all__ = ["EndpointsFileError", "StaticDiscovery", "load_endpoints_file"]

log = logging.getLogger(__name__)


class EndpointsFileError(ValueError):
    """The endpoints file cannot be used; the message names the file, the entry and the fix."""


def _check_address(address: object, where: str) -> str:
    if not isinstance(address, str):
        raise EndpointsFileError(f"{where}: address must be a string ip:port, e.g. 127.0.0.1:8000")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointsFileError(f'{where}: address "{address}" is not ip:port (e.g. 127.0.0.1:8000)')
    return address


def _from_engine_sim(entry: object, where: str) -> dict[str, object]:
    if not isinstance(entry, dict) or not {"host", "port", "model"} <= set(entry):
        raise EndpointsFileError(f"{where}: a list entry needs host, port and model (the aibrix-engine-sim format)")
    out = {"address": f"{entry['host']}:{entry['port']}", "model": entry["model"], "pod": f"engine-{entry.get('index', 0)}"}
    if entry.get("kv_events_port") is not None:
        out["kvEventsPort"] = entry["kv_events_port"]
    if entry.get("pd_role") in ("prefill", "decode"):
        out["role"] = entry["pd_role"]
    return out


def load_endpoints_file(path: str, models: set[str], prefill_models: frozenset[str] | set[str] = frozenset()
                        ) -> list[DiscoveredEndpoint]:
    """Read and validate ``path``; every endpoint must name one of ``models``, and only
    ``prefill_models`` (the disaggregated ones) may have prefill endpoints."""
    try:
        data = read_yaml_file(path, read_hint="check discovery.endpointsFile in the gateway config")
    except ConfigFileError as exc:
        raise EndpointsFileError(str(exc)) from None
    if data is None:
        data = {"endpoints": []}
    if isinstance(data, list):  # aibrix-engine-sim's endpoints file
        data = {"endpoints": [_from_engine_sim(e, f"{path}: [{i}]") for i, e in enumerate(data)]}
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), list):
        raise EndpointsFileError(f'{path}: expected a mapping with an "endpoints" list of {{address, model}} entries')
    out: list[DiscoveredEndpoint] = []
    seen: set[str] = set()
    for i, entry in enumerate(data["endpoints"]):
        where = f"{path}: endpoints[{i}]"
        if not isinstance(entry, dict):
            raise EndpointsFileError(f"{where}: expected a mapping with address and model")
        unknown = set(entry) - {"address", "model", "pod", "adapters", "kvEventsPort", "role"}
        if unknown:
            raise EndpointsFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
                                     "expected address, model, pod, adapters, kvEventsPort, role")
        events_port = entry.get("kvEventsPort")
        if events_port is not None and (type(events_port) is not int or not 0 < events_port < 65536):
            raise EndpointsFileError(f"{where}: kvEventsPort must be a port number (1-65535), got {events_port!r}")
        address = _check_address(entry.get("address"), where)
        model = entry.get("model")
        if model not in models:
            raise EndpointsFileError(f'{where}: model "{model}" is not served by this gateway; '
                                     f'models: {", ".join(sorted(models))}')
        adapters = entry.get("adapters", [])
        if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
            raise EndpointsFileError(f"{where}: adapters must be a list of adapter names")
        if address in seen:
            raise EndpointsFileError(f'{where}: address "{address}" is listed twice')
        seen.add(address)
        role = entry.get("role", "decode")
        if role not in ("prefill", "decode"):
            raise EndpointsFileError(f"{where}: role must be prefill or decode, got {role!r}")
        if role == "prefill":
            if model not in prefill_models:
                raise EndpointsFileError(f'{where}: role is prefill but model "{model}" has no disaggregation in the '
                                         "gateway config; add models[].disaggregation or drop the role")
            model = prefill_pool(model)
        out.append(DiscoveredEndpoint(address, str(entry.get("pod") or address), model, frozenset(adapters),
                                      kv_events_port=events_port))
    return out


class StaticDiscovery:
    """Publishes the endpoints file's contents, again whenever the file changes."""

    def __init__(self, path: str, models: set[str], publish: Callable[[list[DiscoveredEndpoint]], None],
                 poll_interval_s: float = 1.0, *, prefill_models: set[str] | frozenset[str] = frozenset()) -> None:
        self._path = path
        self._models = models
        self._prefill_models = prefill_models
        self._publish = publish
        self._poll_interval_s = poll_interval_s
        self._stamp: FileStamp | None = None
        self.last_error: str | None = None

    def _file_stamp(self) -> FileStamp | None:
        try:
            return file_stamp(self._path)
        except OSError:
            return None  # a missing file is a change too: the next load reports it

    def load(self) -> None:
        """Load the file now and publish it; raise EndpointsFileError if it is unusable."""
        stamp = self._file_stamp()
        endpoints = load_endpoints_file(self._path, self._models, self._prefill_models)
        self._stamp = stamp
        self.last_error = None
        self._publish(endpoints)

    def poll(self) -> bool:
        """Reload if the file changed; return True when new endpoints were published."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        try:
            self.load()
        except EndpointsFileError as exc:
            self._stamp = stamp  # do not log the same broken file every poll
            self.last_error = str(exc)
            log.error("keeping the previous endpoints: %s", exc)
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._poll_interval_s)
            except TimeoutError:
                self.poll()

    async def close(self) -> None:
        return None
