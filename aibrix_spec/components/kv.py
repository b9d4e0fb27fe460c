"""Config model of the distributed KV-cache pool (`aibrix-kv-server`) and its clients.

One `KVPoolConfig` document is what the compiler writes into the pool's ConfigMap; the
server reads its `server:` block, engines (the vLLM connector, the simulated engine's pool
adapter) read its `client:` block. Sizes accept bytes as an integer or a Kubernetes quantity
string (`64Gi`, `512Mi`, `4M`), so the value in the stack can be copied as written.

- `server.capacity` bounds the bytes of KV blocks one member holds; memory is handed out in
  `server.pageSize` pages (a block occupies ceil(len / pageSize) pages), so usable capacity is
  `floor(capacity / pageSize) * pageSize`.
- `server.eviction.policy` picks the eviction plugin: `adaptive` (default: LRU or S3-FIFO,
  whichever a sampled miniature of each shows winning), `s3fifo` (scan-resistant), `lru` or
  `fifo` (baselines).
- Memory for requests: a member reserves each request's announced size from
  `server.maxBufferedBytes` (all connections together) before reading it, and reads the
  payload into memory that grows with the bytes that arrive; one request is at most
  `server.maxRequestSize`; a request not fully received `server.frameTimeoutSeconds` after it
  started closes its connection.
- `client.members` says where the pool members are: a `static` list of `host:port`, or the A
  records of the pool's headless Service (`dns`), re-resolved every `refreshSeconds`.

Light: pydantic only (imported by the compiler).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from aibrix_spec._base import SpecModel

__all__ = [
    "EvictionConfig",
    "EvictionPolicyName",
    "KVClientConfig",
    "KVPoolConfig",
    "KVServerConfig",
    "MembersConfig",
    "SharedMemoryConfig",
    "parse_quantity",
]

EvictionPolicyName = Literal["adaptive", "s3fifo", "lru", "fifo"]

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$")
_SUFFIX = {
    None: 1,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def parse_quantity(value: int | str) -> int:
    """Bytes from an integer or a Kubernetes quantity string.

    >>> parse_quantity("64Ki"), parse_quantity("1.5G"), parse_quantity(4096)
    (65536, 1500000000, 4096)
    """
    if isinstance(value, bool):
        raise ValueError("expected a byte count (e.g. 1073741824) or a quantity like '1Gi', got a boolean")
    if isinstance(value, int):
        return value
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"expected a byte count or a quantity like '512Mi', '64Gi', '4M', got {value!r}")
    number, suffix = match.groups()
    return int(float(number) * _SUFFIX[suffix])


def _positive_bytes(value: int | str, what: str) -> int:
    n = parse_quantity(value)
    if n <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return n


class EvictionConfig(SpecModel):
    """Which blocks leave when the member is full."""

    policy: EvictionPolicyName = Field(
        "adaptive",
        description=(
            "adaptive (LRU or S3-FIFO, whichever a sampled miniature of each shows winning), "
            "s3fifo (small FIFO + main FIFO + ghost queue, scan-resistant), lru or fifo."
        ),
    )
    small_queue_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="S3-FIFO and adaptive: share of the capacity given to the small (probationary) FIFO.",
    )


class SharedMemoryConfig(SpecModel):
    """The same-node fast path: block memory lives in a file on a tmpfs that clients map."""

    enabled: bool = Field(True, description="Offer the block memory to clients on the same node.")
    dir: str = Field(
        "/dev/shm",
        min_length=1,
        description="tmpfs directory holding the shared block memory file (mount a Memory emptyDir here).",
    )


class KVServerConfig(SpecModel):
    """One pool member."""

    host: str = Field("0.0.0.0", min_length=1, description="Address the block protocol listens on.")
    port: int = Field(9600, ge=0, le=65535, description="TCP port of the block protocol (0: any free port).")
    metrics_port: int = Field(
        9601, ge=0, le=65535, description="HTTP port of /metrics and /healthz (0: any free port)."
    )
    capacity: int | str = Field("1Gi", description="Bytes of KV blocks this member holds (e.g. 64Gi).")
    page_size: int | str = Field("64Ki", description="Allocation unit of block memory.")
    max_block_size: int | str = Field("64Mi", description="Largest block accepted; bigger ones are refused.")
    max_batch: int = Field(4096, ge=1, le=1_000_000, description="Most keys or blocks in one request.")
    eviction: EvictionConfig = Field(default_factory=EvictionConfig, description="Eviction plugin.")
    shm: SharedMemoryConfig = Field(default_factory=SharedMemoryConfig, description="Same-node fast path.")
    drain_seconds: float = Field(
        10.0, ge=0.0, le=3600.0, description="On SIGTERM: how long in-flight requests may take to finish."
    )
    max_request_size: int | str | None = Field(
        None,
        description="Largest request one connection may send (its bytes in flight); larger ones are refused "
        "and the connection closed. Default: maxBlockSize (at least 4Mi, the clients' default maxRequestBytes) "
        "plus 64Ki for the request's table. Keep it at least the clients' maxRequestBytes.",
    )
    max_buffered_bytes: int | str = Field(
        "256Mi",
        description="Receive-buffer bytes of all connections together; a request that does not fit waits "
        "(its connection is not read) until others finish.",
    )
    frame_timeout_seconds: float = Field(
        30.0, gt=0.0, le=3600.0,
        description="A request must fully arrive this long after its first byte, or its connection is closed.",
    )

    @field_validator("capacity", "page_size", "max_block_size", "max_buffered_bytes")
    @classmethod
    def _sizes(cls, value: int | str, info: ValidationInfo) -> int:
        return _positive_bytes(value, info.field_name or "size")

    @field_validator("max_request_size")
    @classmethod
    def _request_size(cls, value: int | str | None) -> int | None:
        return None if value is None else _positive_bytes(value, "maxRequestSize")

    @model_validator(mode="after")
    def _capacity_holds_a_page(self) -> KVServerConfig:
        if int(self.capacity) < int(self.page_size):
            raise ValueError(f"capacity ({self.capacity} bytes) must hold at least one page ({self.page_size} bytes)")
        if self.max_request_bytes < self.max_block_bytes:
            raise ValueError(f"maxRequestSize ({self.max_request_bytes} bytes) must hold one block of maxBlockSize "
                             f"({self.max_block_bytes} bytes); raise it or lower maxBlockSize")
        if int(self.max_buffered_bytes) < self.max_request_bytes:
            raise ValueError(f"maxBufferedBytes ({self.max_buffered_bytes} bytes) must hold one request of "
                             f"maxRequestSize ({self.max_request_bytes} bytes); raise it")
        return self

    @property
    def capacity_bytes(self) -> int:
        return int(self.capacity)

    @property
    def page_bytes(self) -> int:
        return int(self.page_size)

    @property
    def max_block_bytes(self) -> int:
        return int(self.max_block_size)

    @property
    def max_request_bytes(self) -> int:
        """One request's limit: the field, or maxBlockSize (at least 4Mi) plus 64Ki of table."""
        if self.max_request_size is not None:
            return int(self.max_request_size)
        return max(self.max_block_bytes, 4 << 20) + (64 << 10)

    @property
    def max_buffered(self) -> int:
        return int(self.max_buffered_bytes)


class MembersConfig(SpecModel):
    """Where the pool members are."""

    source: Literal["static", "dns"] = Field("static", description="static list, or the headless Service's DNS.")
    static: list[str] = Field(default_factory=list, description="`host:port` of each member (source static).")
    dns_name: str = Field(
        "", description="Headless Service name resolving to every member's IP (source dns), e.g. kv.llm.svc."
    )
    port: int = Field(9600, ge=1, le=65535, description="Block-protocol port of members found through DNS.")
    refresh_seconds: float = Field(10.0, gt=0.0, le=3600.0, description="How often DNS is resolved again.")

    @field_validator("static")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for i, member in enumerate(value):
            if not _HOST_PORT.match(member) or not 0 < int(member.rsplit(":", 1)[1]) <= 65535:
                raise ValueError(f"static[{i}] = {member!r} is not `host:port` (e.g. 10.0.0.7:9600)")
        if len(set(value)) != len(value):
            raise ValueError("static lists a member twice")
        return value

    @model_validator(mode="after")
    def _source_has_what_it_needs(self) -> MembersConfig:
        if self.source == "static" and not self.static:
            raise ValueError("source static needs at least one `host:port` under `static`")
        if self.source == "dns" and not self.dns_name:
            raise ValueError("source dns needs `dnsName` (the pool's headless Service, e.g. kv.llm.svc)")
        return self


class KVClientConfig(SpecModel):
    """How an engine talks to the pool."""

    members: MembersConfig = Field(description="Where the pool members are.")
    timeout_ms: float = Field(
        200.0, gt=0.0, le=60_000.0, description="Per-request deadline; a late member counts as a miss."
    )
    connect_timeout_ms: float = Field(100.0, gt=0.0, le=60_000.0, description="Deadline to open a connection.")
    dead_member_backoff_seconds: float = Field(
        5.0, ge=0.0, le=3600.0, description="After a failure a member is skipped (all misses) this long."
    )
    shared_memory: Literal["auto", "never"] = Field(
        "auto", description="auto: map the member's block memory when it runs on the same node."
    )
    verify_shm_checksums: bool = Field(
        True,
        description="Checksum blocks on the shared-memory path too (TCP blocks are always verified); false "
        "trusts the node's memory and serves a block damaged in place as a hit.",
    )
    max_batch: int = Field(1024, ge=1, le=1_000_000, description="Most keys per request; larger calls are split.")
    max_request_bytes: int | str = Field(
        "4Mi",
        description="Block bytes per request; larger calls are split into pipelined requests so the member "
        "works on one while the next is on the wire.",
    )

    @field_validator("max_request_bytes")
    @classmethod
    def _request_bytes(cls, value: int | str) -> int:
        return _positive_bytes(value, "maxRequestBytes")


class KVPoolConfig(SpecModel):
    """The pool's ConfigMap document: a server block, a client block, or both."""

    server: KVServerConfig | None = Field(None, description="Settings of each pool member.")
    client: KVClientConfig | None = Field(None, description="Settings engines use to reach the pool.")
