"""Precise prefix index: the engines' KV-cache events, translated to our block hashes.

Where it sits: in ``kv-events`` mode (``routing.parameters.prefixCacheAware.index``) the
app runs one ``KVEventSubscriber`` per model; it subscribes to every discovered engine's
ZMQ publisher (``runtime_components.common.kv_event_format`` describes the wire), and an
``EventTranslator`` applies what engines report to the model's prefix index (a sink with
``add``/``remove``/``forget``, ``policy.prefix.PrefixIndex``).

Translation: vLLM hashes blocks its own way (a seed per process, SHA-256 of pickled
tokens), the gateway hashes prompts with ``common.hashing`` (salt = model, or
model+adapter). A ``BlockStored`` carries each block's tokens and its parent's engine hash,
so our hash is ``hash_block(ours(parent) or root_hash(salt), tokens)``; a bounded map per
endpoint remembers engine hash -> our hash, because ``BlockRemoved`` carries only engine
hashes. A stored block whose parent we never saw (we joined late, or the map forgot it)
cannot be placed in a chain and is skipped (``unknown_parent``); its descendants follow.

Sequence numbers: each publisher numbers its batches from 0. A jump forward is a *gap*
(ZMQ dropped messages: the PUB high-water mark, a reconnect): the endpoint's blocks are
forgotten, as the index can no longer say what the engine holds, and rebuilt from the
events that follow. A number that goes back means the engine restarted (its cache is
empty): the same. The first message of a new connection is taken as it comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import zmq
import zmq.asyncio

from runtime_components.common.hashing import hash_block, root_hash
from runtime_components.common.kv_event_format import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EngineHash,
    EventBatch,
    EventFormatError,
    decode_batch,
    decode_seq,
    stored_blocks,
)

__all__ = ["BlockSink", "EventTranslator", "KVEventSubscriber", "SubscriberCounters"]

log = logging.getLogger(__name__)


class BlockSink(Protocol):
    """Where translated blocks go (``PrefixIndex`` is one)."""

    def add(self, hashes: Sequence[int], address: str) -> None: ...
    def remove(self, hashes: Sequence[int], address: str) -> None: ...
    def forget(self, address: str) -> None: ...


@dataclass
class SubscriberCounters:
    """What the translator and subscriber did (the app exports them as metrics)."""

    batches: int = 0  #: event batches (one per engine step) applied
    stored: int = 0  #: blocks added to the index
    removed: int = 0  #: blocks removed from the index
    cleared: int = 0  #: AllBlocksCleared events
    unknown_parent: int = 0  #: stored blocks skipped: their parent's engine hash was never seen
    unknown_removed: int = 0  #: removed blocks whose engine hash was not mapped (never stored, or forgotten)
    block_size_mismatch: int = 0  #: stored events of another block size than the index's
    gaps: int = 0  #: sequence jumps and restarts (the endpoint's blocks were forgotten)
    decode_errors: int = 0  #: messages that were not a KV event batch


class EventTranslator:
    """Applies decoded batches of one model's engines to a sink, in our hashes."""

    def __init__(self, sink: BlockSink, model: str, block_size: int, max_blocks_per_endpoint: int,
                 counters: SubscriberCounters | None = None) -> None:
        if max_blocks_per_endpoint < 1:
            raise ValueError(f"max_blocks_per_endpoint must be >= 1, got {max_blocks_per_endpoint}")
        self.sink = sink
        self.model = model
        self.block_size = block_size
        self._max = max_blocks_per_endpoint
        self._maps: dict[str, OrderedDict[EngineHash, int]] = {}
        self._roots: dict[str | None, int] = {}
        self.counters = counters or SubscriberCounters()

    def mapped(self, address: str) -> int:
        return len(self._maps.get(address, ()))

    def apply(self, address: str, batch: EventBatch) -> None:
        for event in batch.events:
            if isinstance(event, BlockStored):
                self._stored(address, event)
            elif isinstance(event, BlockRemoved):
                self._removed(address, event.block_hashes)
            elif isinstance(event, AllBlocksCleared):
                self.counters.cleared += 1
                self.forget(address)

    def forget(self, address: str) -> None:
        """Everything known about ``address`` is void (cleared, gap, restart, gone)."""
        self._maps.pop(address, None)
        self.sink.forget(address)

    def _root(self, lora_name: str | None) -> int:
        root = self._roots.get(lora_name)
        if root is None:
            root = self._roots[lora_name] = root_hash(self.model if lora_name is None else f"{self.model}+{lora_name}")
        return root

    def _stored(self, address: str, event: BlockStored) -> None:
        if event.block_size != self.block_size:
            self.counters.block_size_mismatch += 1
            return
        mapping = self._maps.setdefault(address, OrderedDict())
        if event.parent_block_hash is None:
            parent: int | None = self._root(event.lora_name)
        else:
            parent = mapping.get(event.parent_block_hash)
        if parent is None:
            self.counters.unknown_parent += len(event.block_hashes)
            return
        ours: list[int] = []
        for engine_hash, tokens in stored_blocks(event):
            parent = hash_block(parent, tokens)
            mapping[engine_hash] = parent
            mapping.move_to_end(engine_hash)
            ours.append(parent)
        while len(mapping) > self._max:
            mapping.popitem(last=False)
        if ours:
            self.sink.add(ours, address)
            self.counters.stored += len(ours)

    def _removed(self, address: str, engine_hashes: Sequence[EngineHash]) -> None:
        mapping = self._maps.get(address)
        ours = [h for h in (mapping.pop(e, None) for e in engine_hashes) if h is not None] if mapping else []
        self.counters.unknown_removed += len(engine_hashes) - len(ours)
        if ours:
            self.sink.remove(ours, address)
            self.counters.removed += len(ours)


class _Stream:
    """The sequence state of one endpoint's subscription."""

    def __init__(self) -> None:
        self.last_seq: int | None = None


class KVEventSubscriber:
    """One SUB socket per engine of a model, following discovery; feeds an ``EventTranslator``.

    ``set_endpoints({address: "tcp://host:port"})`` is called whenever discovery changes;
    ZMQ itself reconnects a SUB socket whose publisher went away and came back (a restarted
    engine then shows up as a sequence restart). ``on_gap(address)`` is called after a gap.
    """

    def __init__(self, translator: EventTranslator, *, topic: str = "",
                 on_gap: Callable[[str], None] | None = None) -> None:
        self.translator = translator
        self.counters = translator.counters
        self._topic = topic.encode("utf-8")
        self._on_gap = on_gap
        self._ctx: zmq.asyncio.Context | None = None  # made on first use, so an unstarted app holds no sockets
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._streams: dict[str, _Stream] = {}
        self.batches = 0  #: batches applied (tests wait on it)

    @property
    def endpoints(self) -> dict[str, str]:
        return {address: url for address, (url, _) in self._tasks.items()}

    def set_endpoints(self, wanted: dict[str, str]) -> None:
        """Subscribe to exactly ``wanted`` (address -> tcp:// URL); must run inside the event loop."""
        for address in [a for a, (url, _) in self._tasks.items() if wanted.get(a) != url]:
            _, task = self._tasks.pop(address)
            task.cancel()
            self._streams.pop(address, None)
            self.translator.forget(address)
        for address, url in wanted.items():
            if address not in self._tasks:
                self._streams[address] = _Stream()
                task = asyncio.create_task(self._run(address, url), name=f"kv-events {address}")
                self._tasks[address] = (url, task)

    async def _run(self, address: str, url: str) -> None:
        """Receive until cancelled; a socket error is logged and the socket made again a second later."""
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        while True:
            sock = self._ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 100_000)
            sock.setsockopt(zmq.SUBSCRIBE, self._topic)
            try:
                sock.connect(url)
                self._streams[address] = _Stream()  # a new connection starts a new sequence
                while True:
                    self.handle(address, await sock.recv_multipart())
            except asyncio.CancelledError:
                return
            except zmq.ZMQError as exc:
                log.warning("kv events from %s (%s): %s; reconnecting", address, url, exc)
            finally:
                sock.close(linger=0)
            await asyncio.sleep(1.0)

    def handle(self, address: str, frames: Sequence[bytes]) -> None:
        """Apply one multipart message ``[topic, seq, payload]`` from ``address``'s publisher."""
        try:
            if len(frames) != 3:
                raise EventFormatError(f"expected 3 frames [topic, seq, payload], got {len(frames)}")
            seq = decode_seq(frames[1])
            batch = decode_batch(frames[2])
        except EventFormatError as exc:
            self.counters.decode_errors += 1
            log.warning("kv events from %s: %s", address, exc)
            return
        stream = self._streams.setdefault(address, _Stream())
        if stream.last_seq is not None and seq != stream.last_seq + 1:
            self.counters.gaps += 1
            log.warning("kv events from %s: seq %d after %d; forgetting its blocks", address, seq, stream.last_seq)
            self.translator.forget(address)
            if self._on_gap is not None:
                self._on_gap(address)
        stream.last_seq = seq
        self.translator.apply(address, batch)
        self.batches += 1
        self.counters.batches += 1

    async def close(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
