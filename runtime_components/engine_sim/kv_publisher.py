"""The simulated engine's KV-event publisher: vLLM's ``--kv-events-config``, on a ZMQ PUB socket.

``--kv-events-config`` takes the JSON vLLM takes (``KVEventsConfig``), so the compiler
writes one flag for both engines::

    {"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://*:5557", "topic": ""}

Each engine step that changed the prefix cache publishes one multipart message
``[topic, seq, payload]`` (``runtime_components.common.kv_event_format``), seq counting
from 0 per engine. With several engines in one process, engine ``i`` binds the endpoint's
port plus ``i`` (as vLLM offsets it by data-parallel rank); port 0 binds a free port.
``replay_endpoint`` is accepted and ignored (no replay buffer here); ``hwm`` is honoured;
``buffer_steps`` and ``max_queue_size`` are accepted for vLLM's sake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from runtime_components.common.kv_event_format import EventBatch, KVEvent, encode_batch, encode_seq

__all__ = ["KVEventPublisher", "KVEventsSettings", "parse_kv_events_config"]

_KNOWN = {"enable_kv_cache_events", "publisher", "endpoint", "replay_endpoint", "buffer_steps", "hwm",
          "max_queue_size", "topic"}


@dataclass(frozen=True)
class KVEventsSettings:
    """The parts of vLLM's ``KVEventsConfig`` the simulator uses."""

    host: str  #: "*" binds every interface
    port: int  #: engine i binds port + i (0: a free port each)
    topic: str = ""
    hwm: int = 100_000

    def endpoint_for(self, index: int) -> str:
        return f"tcp://{self.host}:{self.port + index if self.port else 0}"


def parse_kv_events_config(text: str) -> KVEventsSettings | None:
    """Read ``--kv-events-config`` JSON; None when events are off; ValueError saying what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--kv-events-config: not JSON ({exc.msg} at column {exc.colno}); "
                         'expected e.g. {"enable_kv_cache_events": true, "endpoint": "tcp://*:5557"}') from None
    if not isinstance(raw, dict):
        raise ValueError("--kv-events-config: expected a JSON object")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ValueError(f"--kv-events-config: unknown key(s) {', '.join(unknown)}; expected: {', '.join(sorted(_KNOWN))}")
    enabled = raw.get("enable_kv_cache_events", False)
    publisher = raw.get("publisher") or ("zmq" if enabled else "null")
    if publisher not in ("zmq", "null"):
        raise ValueError(f'--kv-events-config: publisher must be "zmq" or "null", got {publisher!r}')
    if not enabled or publisher == "null":
        return None
    endpoint = raw.get("endpoint", "tcp://*:5557")
    host, _, port = str(endpoint).removeprefix("tcp://").rpartition(":")
    if not str(endpoint).startswith("tcp://") or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--kv-events-config: endpoint must be tcp://HOST:PORT (e.g. tcp://*:5557), got {endpoint!r}")
    topic, hwm = raw.get("topic", ""), raw.get("hwm", 100_000)
    if not isinstance(topic, str) or type(hwm) is not int or hwm < 0:
        raise ValueError("--kv-events-config: topic must be a string and hwm a non-negative integer")
    return KVEventsSettings(host, int(port), topic, hwm)


class KVEventPublisher:
    """One engine's PUB socket; ``publish`` never blocks (ZMQ drops beyond the high-water mark)."""

    def __init__(self, settings: KVEventsSettings, index: int = 0) -> None:
        self._sock = zmq.Context.instance().socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, settings.hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(settings.endpoint_for(index))
        self.port = int(self._sock.getsockopt_string(zmq.LAST_ENDPOINT).rpartition(":")[2])
        self._topic = settings.topic.encode("utf-8")
        self._seq = 0
        self.dropped = 0  #: batches lost because the send queue was full

    @property
    def next_seq(self) -> int:
        return self._seq

    def publish(self, events: Sequence[KVEvent], ts: float | None = None) -> None:
        if not events:
            return
        payload = encode_batch(EventBatch(time.time() if ts is None else ts, tuple(events), 0))
        try:
            self._sock.send_multipart((self._topic, encode_seq(self._seq), payload), flags=zmq.NOBLOCK)
        except zmq.Again:  # no room: the batch is lost, as with vLLM; subscribers see the seq gap
            self.dropped += 1
        self._seq += 1

    def skip(self, n: int = 1) -> None:
        """Lose the next ``n`` sequence numbers (fault injection: a subscriber must see a gap)."""
        self._seq += n

    def close(self) -> None:
        self._sock.close(linger=0)
