"""Record vLLM's KV-event frames into ``vllm_0_32/kv_events.json`` (run with a vLLM 0.32 venv's python).

    <venv>/bin/python tests/contracts/record_kv_events.py > tests/contracts/vllm_0_32/kv_events.json

vLLM's own ``ZmqEventPublisher`` publishes three batches on a local PUB socket (topic
"kv", a replay ROUTER beside it); a SUB socket records the multipart frames as they arrive
on the wire, then a DEALER asks the replay socket for everything from seq 1. The test suite
decodes the frames with our decoder and compares with ``expected`` (what was published).
"""

from __future__ import annotations

import json
import time

import zmq
from vllm.distributed.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    ZmqEventPublisher,
)

H1, H2, H3 = 2**64 - 5, 12345678901234567890, 42  # unsigned 64-bit, as VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1 gives
BATCHES = [
    KVEventBatch(ts=1.25, events=[BlockStored(block_hashes=[H1, H2], parent_block_hash=None,
                                              token_ids=list(range(100, 132)), block_size=16, lora_id=None,
                                              medium="GPU", lora_name=None, group_idx=0)]),
    KVEventBatch(ts=2.5, events=[BlockStored(block_hashes=[H3], parent_block_hash=H2,
                                             token_ids=list(range(7, 23)), block_size=16, lora_id=3,
                                             medium="GPU", lora_name="sql", group_idx=0),
                                 BlockRemoved(block_hashes=[H1], medium="GPU", group_idx=0)]),
    KVEventBatch(ts=3.75, events=[AllBlocksCleared()]),
]


def main() -> None:
    ctx = zmq.Context.instance()
    pub = ZmqEventPublisher(0, endpoint="tcp://*:5599", replay_endpoint="tcp://*:5600", topic="kv")
    sub = ctx.socket(zmq.SUB)
    sub.connect("tcp://127.0.0.1:5599")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.5)  # PUB drops messages until the subscription has arrived
    for batch in BATCHES:
        pub.publish(batch)
    frames = [sub.recv_multipart() for _ in BATCHES]
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect("tcp://127.0.0.1:5600")
    dealer.send_multipart([b"", (1).to_bytes(8, "big")])
    replay = []
    while True:
        msg = dealer.recv_multipart()
        replay.append(msg)
        if msg[2] == (-1).to_bytes(8, "big", signed=True):
            break
    pub.shutdown()
    expected = [
        {"ts": 1.25, "events": [{"type": "BlockStored", "block_hashes": [H1, H2], "parent_block_hash": None,
                                 "token_ids": list(range(100, 132)), "block_size": 16, "lora_name": None}]},
        {"ts": 2.5, "events": [{"type": "BlockStored", "block_hashes": [H3], "parent_block_hash": H2,
                                "token_ids": list(range(7, 23)), "block_size": 16, "lora_name": "sql"},
                               {"type": "BlockRemoved", "block_hashes": [H1]}]},
        {"ts": 3.75, "events": [{"type": "AllBlocksCleared"}]},
    ]
    print(json.dumps({
        "note": "Recorded by tests/contracts/record_kv_events.py with vLLM 0.32.0's ZmqEventPublisher "
                "(topic 'kv'); frames hex-encoded as they arrived on a SUB socket and from the replay ROUTER.",
        "messages": [[f.hex() for f in m] for m in frames],
        "replay_from_1": [[f.hex() for f in m] for m in replay],
        "expected": expected,
    }, indent=1))


if __name__ == "__main__":
    main()
