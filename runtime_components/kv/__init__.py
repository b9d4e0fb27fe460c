"""The distributed KV-cache pool: members, client, eviction, vLLM connector, engine-sim adapters.

Modules, from the bottom up:

- ``eviction``: adaptive (default: LRU or S3-FIFO, whichever wins), S3-FIFO, LRU and FIFO
  plugins ordering keys by bytes;
- ``cache``: a byte-bounded index driven by a plugin (used alone by benchmarks and sims);
- ``heap``: the member's block memory, fixed pages in one (optionally shared) mapping;
- ``store``: index + heap + checksums + pins/reservations for the shared-memory path;
- ``protocol`` / ``framing``: the versioned binary protocol and zero-copy frame reassembly;
- ``server`` / ``metrics`` / ``cli``: one pool member (``aibrix-kv-server``);
- ``members`` / ``connection`` / ``shm`` / ``client``: placement, pipelined connections, the
  same-node fast path, and the pool client engines use;
- ``connector_logic`` / ``vllm_connector``: the vLLM v1 KV connector;
- ``sim_store``: the pool as ``engine_sim``'s external KV store.

Importing the package imports nothing heavy; see docs/kv.md.
"""
