"""A pure, clock-free continuous-batching engine: vLLM v1's scheduler over a roofline model.

Where it sits: the HTTP server (``server.py``) and the discrete-event simulator (``des.py``)
both drive an ``EngineCore``: ``add_request`` when a request arrives, then ``step(now)``
whenever the engine is idle and ``has_work()``; the step's tokens appear at
``now + duration``. No clock, no I/O, no randomness: the same calls give the same results.

One step, as vLLM v1 schedules it:

1. Running requests first, in order: each gets the tokens it still needs (1 when decoding,
   a chunk of its prompt when prefilling), within the ``max_num_batched_tokens`` budget.
   When the KV cache has no block left for one, the *last* running request is preempted:
   its blocks are freed and it goes back to the head of the queue to be recomputed.
2. If nothing was preempted, waiting requests join in FIFO order while budget, sequence
   slots (``max_num_seqs``) and KV blocks allow. A joining request reuses the longest
   cached prefix of its prompt (local prefix cache, then the external store, at least one
   prompt token always recomputed); when its blocks do not fit, it and everything behind it
   keep waiting (a full KV cache makes requests queue).
3. The step's duration comes from ``perf.RooflineModel`` given the prefill chunks and
   decode batch, plus the time to load blocks from the external store, times the
   ``slowdown_factor`` (fault injection). A store that loads layer by layer
   (``load_stages`` S > 1, as the pool's vLLM connector does) overlaps the load T with the
   compute C: stage s+1 is on the wire while stage s computes, so the step takes
   max(T + C/S, C + T/S); S = 1 is the serial T + C.
4. Requests whose known tokens are all computed sample one token; full prompt blocks are
   registered in the prefix cache (and written to the external store); finished requests
   free their blocks (which stay cached until evicted).
"""

from __future__ import annotations

from dataclasses import dataclass

from aibrix_spec.catalog import accelerator, model_arch
from runtime_components.common.hashing import block_hashes
from runtime_components.common.kv_event_format import KVEvent

from .config import (
    AdapterError,
    EngineConfig,
    ExternalKVStore,
    RequestRejected,
    SimRequest,
    StepResult,
    TokenEvent,
    UnknownAdapterError,
    prefix_salt,
)
from .kv_blocks import BlockPool
from .perf import PrefillChunk, RooflineModel
from .stats import EngineCounters, EngineStats
from .wait_queue import WaitQueue

__all__ = ["EngineCore"]


@dataclass(eq=False)
class _Seq:
    """Mutable per-request state inside the engine."""

    req: SimRequest
    hashes: list[int]
    blocks: list[int]
    prompt_len: int
    num_computed: int = 0
    num_output: int = 0
    committed_blocks: int = 0  #: prompt blocks already registered in the prefix cache
    first_store_block: int = 0  #: blocks below this came from a cache; store only the rest
    cached_tokens: int = 0
    first_scheduled_s: float | None = None
    first_token_s: float | None = None
    last_token_s: float | None = None

    @property
    def total_len(self) -> int:
        return self.prompt_len + self.num_output


class EngineCore:
    """One simulated vLLM engine (see the module docstring for the step algorithm)."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        external_kv_store: ExternalKVStore | None = None,
        model: RooflineModel | None = None,
        record_kv_events: bool = False,
    ) -> None:
        self.config = config
        self.model = model or RooflineModel(
            accelerator(config.accelerator), model_arch(config.model_arch), config.tensor_parallel
        )
        blocks = config.num_gpu_blocks or self.model.kv_capacity_blocks(config.block_size, config.gpu_memory_utilization)
        self.pool = BlockPool(blocks, config.enable_prefix_caching, block_size=config.block_size,
                              record_events=record_kv_events)
        self.external_kv_store = external_kv_store
        self.slowdown_factor = 1.0  #: multiplies every step's duration (fault injection)
        self.counters = EngineCounters(config.max_model_len)
        self._waiting: WaitQueue[_Seq] = WaitQueue(config.scheduling_policy)  # type: ignore[arg-type]
        self._running: list[_Seq] = []
        self._by_id: dict[str, _Seq] = {}
        self._adapters: list[str] = []

    # -- requests ------------------------------------------------------------------------

    def add_request(self, request: SimRequest) -> None:
        """Queue a request; raises ``RequestRejected``/``UnknownAdapterError`` if it cannot run."""
        cfg = self.config
        n_prompt = len(request.prompt_token_ids)
        if request.request_id in self._by_id:
            raise RequestRejected(f"request id {request.request_id!r} is already in flight")
        if n_prompt < 1:
            raise RequestRejected("the prompt is empty; expected at least one token")
        if request.max_tokens < 1:
            raise RequestRejected(f"max_tokens must be >= 1, got {request.max_tokens}")
        if n_prompt + request.max_tokens > cfg.max_model_len:
            raise RequestRejected(
                f"this model's maximum context length is {cfg.max_model_len} tokens; the request has "
                f"{n_prompt} prompt tokens and asks for {request.max_tokens} more; hint: lower max_tokens"
            )
        if -(-(n_prompt + request.max_tokens) // cfg.block_size) > self.pool.num_blocks:
            raise RequestRejected(
                f"the request needs more KV blocks than the engine has ({self.pool.num_blocks} blocks of "
                f"{cfg.block_size} tokens); hint: shorten the prompt or lower max_tokens"
            )
        if request.adapter is not None and request.adapter not in self._adapters:
            raise UnknownAdapterError(f"the model `{request.adapter}` does not exist (adapter not loaded)")
        salt = request.salt or prefix_salt(cfg.served_model_name, request.adapter)
        seq = _Seq(request, block_hashes(request.prompt_token_ids, cfg.block_size, salt), [], n_prompt)
        self._waiting.push(seq)
        self._by_id[request.request_id] = seq

    def abort_request(self, request_id: str) -> bool:
        """Drop a request (client went away); returns whether it was in flight."""
        seq = self._by_id.pop(request_id, None)
        if seq is None:
            return False
        if seq in self._running:
            self._running.remove(seq)
        else:
            self._waiting.remove(seq)
        self.pool.free(seq.blocks)
        seq.blocks = []
        self.counters.aborted += 1
        return True

    def has_work(self) -> bool:
        return bool(self._waiting or self._running)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_cache_usage(self) -> float:
        return self.pool.usage

    # -- adapters ------------------------------------------------------------------------

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    def load_adapter(self, name: str) -> None:
        """Register an adapter (the caller waits ``config.lora_load_s`` to simulate loading)."""
        if name in self._adapters:
            raise AdapterError(f"the lora adapter '{name}' has already been loaded")
        if len(self._adapters) >= self.config.max_loras:
            raise AdapterError(
                f"cannot load adapter '{name}': {len(self._adapters)} of max_loras={self.config.max_loras} "
                f"already loaded ({', '.join(self._adapters)}); hint: unload one first"
            )
        self._adapters.append(name)

    def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise UnknownAdapterError(f"the lora adapter '{name}' cannot be found")
        self._adapters.remove(name)

    # -- the step ------------------------------------------------------------------------

    def step(self, now: float) -> StepResult:
        """Schedule and run one step starting at ``now``; returns its duration and tokens."""
        cfg = self.config
        bs = cfg.block_size
        pool = self.pool
        running = self._running
        budget = cfg.max_num_batched_tokens
        scheduled: list[tuple[_Seq, int]] = []
        preempted: list[str] = []
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            # total_len and _blocks_for written out: this runs per running request per step
            num_new = min(seq.prompt_len + seq.num_output - seq.num_computed, budget)
            need = -(-(seq.num_computed + num_new) // bs) - len(seq.blocks)
            self_preempted = False
            while need > 0 and not pool.can_allocate(need):
                victim, at = self._preemption_victim()
                self._preempt(victim)
                preempted.append(victim.req.request_id)
                self_preempted = victim is seq
                if self_preempted:
                    break
                if at < i:  # priority policy: an already scheduled request gives its budget back
                    undone = next(k for k, (s, _) in enumerate(scheduled) if s is victim)
                    budget += scheduled.pop(undone)[1]
                    i -= 1
            if self_preempted:
                break
            if need > 0:
                seq.blocks.extend(pool.allocate(need))
            scheduled.append((seq, num_new))
            budget -= num_new
            i += 1
        transfer_s = 0.0
        if not preempted:
            while self._waiting and budget > 0 and len(running) < cfg.max_num_seqs:
                admitted = self._admit(self._waiting.head(), budget, now)
                if admitted is None:
                    break  # head of the queue does not fit in the KV cache: it waits
                seq, num_new, ext_s = admitted
                self._waiting.pop_head()
                running.append(seq)
                scheduled.append((seq, num_new))
                budget -= num_new
                transfer_s += ext_s
        return self._execute(now, scheduled, tuple(preempted), transfer_s)

    def _preemption_victim(self) -> tuple[_Seq, int]:
        """Take the running request to preempt, with its index: the latest (fcfs), or the
        largest (priority, arrival) under the priority policy, as vLLM's scheduler does."""
        if self.config.scheduling_policy == "fcfs":
            return self._running.pop(), len(self._running)
        at = max(range(len(self._running)), key=lambda k: (self._running[k].req.priority, self._running[k].req.arrival_s))
        return self._running.pop(at), at

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _preempt(self, seq: _Seq) -> None:
        self.pool.free(seq.blocks)
        seq.blocks = []
        seq.num_computed = 0
        seq.committed_blocks = 0
        self._waiting.push_preempted(seq)
        self.counters.preemptions += 1

    def _admit(self, seq: _Seq, budget: int, now: float) -> tuple[_Seq, int, float] | None:
        """Find the cached prefix of a waiting request and allocate its blocks, or None."""
        bs = self.config.block_size
        max_cached = (seq.prompt_len - 1) // bs  # always recompute at least one prompt token
        hit = self.pool.cached_prefix(seq.hashes[:max_cached])
        ext_blocks = 0
        store = self.external_kv_store
        if store is not None and len(hit) < max_cached:
            ext_blocks = min(store.lookup(seq.hashes[len(hit) : max_cached]), max_cached - len(hit))
        num_computed = (len(hit) + ext_blocks) * bs
        # KV a prefill engine sent (P/D): present in full, so no load cost and no recompute
        transferred = min(seq.req.kv_transferred_tokens, seq.prompt_len - 1)
        if transferred > num_computed:
            ext_blocks = 0  # the transferred KV covers what the store would have loaded
            num_computed = transferred
        num_new = min(seq.total_len - num_computed, budget)
        need = self._blocks_for(num_computed + num_new) - len(hit)
        if not self.pool.can_allocate(need + self.pool.free_among(hit)):
            return None
        self.pool.touch(hit)
        seq.blocks = list(hit) + self.pool.allocate(need)
        seq.num_computed = num_computed
        seq.committed_blocks = len(hit)
        seq.first_store_block = max(len(hit) + ext_blocks, transferred // bs)  # sent blocks are not stored again
        seq.cached_tokens = num_computed
        if seq.first_scheduled_s is None:
            seq.first_scheduled_s = now
        c = self.counters
        c.prefix_queries += seq.prompt_len
        c.prefix_hits += len(hit) * bs
        if store is not None:
            c.external_queries += seq.prompt_len - len(hit) * bs
            c.external_hits += ext_blocks * bs
        return seq, num_new, store.transfer_seconds(ext_blocks) if (store is not None and ext_blocks) else 0.0

    def _execute(
        self, now: float, scheduled: list[tuple[_Seq, int]], preempted: tuple[str, ...], transfer_s: float
    ) -> StepResult:
        chunks: list[PrefillChunk] = []
        decode_seqs = decode_kv = prefill_tokens = 0
        for seq, num_new in scheduled:
            if num_new == 1 and seq.num_computed >= seq.prompt_len:
                decode_seqs += 1
                decode_kv += seq.num_computed
            else:
                samples = seq.num_computed + num_new == seq.total_len
                chunks.append(PrefillChunk(num_new, seq.num_computed, samples))
                prefill_tokens += num_new
        compute_s = self.model.step_seconds(chunks, decode_seqs, decode_kv) if scheduled else 0.0
        duration = self._overlapped(compute_s, transfer_s) * self.slowdown_factor
        end = now + duration
        events: list[TokenEvent] = []
        finished: list[_Seq] = []
        to_store: list[int] = []
        bs = self.config.block_size
        sample = self._sample
        for seq, num_new in scheduled:
            seq.num_computed += num_new
            if seq.committed_blocks * bs + bs <= seq.prompt_len:  # prompt blocks left to register
                full = min(seq.num_computed, seq.prompt_len) // bs
                for j in range(seq.committed_blocks, full):
                    self.pool.commit(seq.blocks[j], seq.hashes[j], seq.hashes[j - 1] if j else None,
                                     seq.req.prompt_token_ids[j * bs:(j + 1) * bs], seq.req.adapter)
                    if j >= seq.first_store_block:
                        to_store.append(seq.hashes[j])
                seq.committed_blocks = max(seq.committed_blocks, full)
            if seq.num_computed < seq.prompt_len + seq.num_output:
                continue  # a prompt chunk that does not end the prompt samples nothing
            event = sample(seq, end)
            events.append(event)
            if event.finished:
                finished.append(seq)
        if to_store and self.external_kv_store is not None:
            self.external_kv_store.store(to_store)
        if finished:
            done = set(map(id, finished))
            self._running = [s for s in self._running if id(s) not in done]
            for seq in finished:
                self.pool.free(seq.blocks)
                seq.blocks = []
                del self._by_id[seq.req.request_id]
        self.counters.steps += 1
        return StepResult(
            start_s=now,
            duration_s=duration,
            events=tuple(events),
            prefill_tokens=prefill_tokens,
            decode_seqs=decode_seqs,
            preempted=preempted,
            external_transfer_s=transfer_s,
            scheduled=tuple([seq.req.request_id for seq, _ in scheduled]),  # a list first: faster than a generator
        )

    def _overlapped(self, compute_s: float, transfer_s: float) -> float:
        """Compute plus external loads, overlapped stage by stage when the store loads layer-wise."""
        stages = max(1, int(getattr(self.external_kv_store, "load_stages", 1))) if transfer_s else 1
        return max(transfer_s + compute_s / stages, compute_s + transfer_s / stages)

    def _sample(self, seq: _Seq, end: float) -> TokenEvent:
        index = seq.num_output
        seq.num_output = n_output = index + 1
        c = self.counters
        c.generation_tokens += 1
        if index == 0:
            seq.first_token_s = end
            c.prompt_tokens += seq.prompt_len
            c.ttft.observe(end - seq.req.arrival_s)
            c.queue_time.observe((seq.first_scheduled_s or end) - seq.req.arrival_s)
        else:
            c.inter_token.observe(end - (seq.last_token_s or end))
        seq.last_token_s = end
        req = seq.req
        cached = seq.cached_tokens if index == 0 else 0
        if n_output < req.max_tokens and seq.prompt_len + n_output < self.config.max_model_len:
            return TokenEvent(req.request_id, index, False, None, cached)
        c.record_finish(req, n_output, seq.first_scheduled_s or end, seq.first_token_s or end, end)
        return TokenEvent(req.request_id, index, True, "length", cached)

    # -- observability -------------------------------------------------------------------

    def stats(self) -> EngineStats:
        """A snapshot of everything vLLM's /metrics would show for this engine."""
        running_adapters = sorted({s.req.adapter for s in self._running if s.req.adapter})
        waiting_adapters = sorted({s.req.adapter for s in self._waiting if s.req.adapter})
        return self.counters.snapshot(
            num_running=len(self._running),
            num_waiting=len(self._waiting),
            kv_cache_usage=self.pool.usage,
            num_gpu_blocks=self.pool.num_blocks,
            loaded_adapters=tuple(self._adapters),
            running_adapters=tuple(running_adapters),
            waiting_adapters=tuple(waiting_adapters),
        )

    def reset_prefix_cache(self) -> None:
        self.pool.reset_prefix_cache()

    def take_kv_events(self) -> list[KVEvent]:
        """KV-cache events since the last call (``record_kv_events``); vLLM publishes them per step."""
        return self.pool.take_events()
