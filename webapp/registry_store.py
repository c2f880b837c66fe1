"""What the registry keeps and where: a node's heartbeat (``NodeEntry``, validated field by
field), the store seam (``RegistryStore``) and the in-memory store (``MemoryStore``) for one
web app process. ``registry_redis.RedisStore`` is the shared one; ``registry.NodeRegistry``
holds the expiry rule and what a page gets.

Errors::

    RegistryError (WebappError)
    ├── HeartbeatError      a heartbeat body that does not validate; names each bad field
    ├── RegistryFull        a new node while ``max_nodes`` are listed
    └── StoreUnavailable    the store could not be reached
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pyodide_client.node_url import node_url_problem

from . import WebappError

__all__ = [
    "ENTRY_FIELDS",
    "FieldError",
    "HeartbeatError",
    "Listed",
    "MemoryStore",
    "NodeEntry",
    "RegistryError",
    "RegistryFull",
    "RegistryStore",
    "StoreUnavailable",
]

log = logging.getLogger(__name__)


# Node ids end up in URL paths and Redis keys: keep them to a safe alphabet.
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
MAX_TEXT_CHARS = 200
MAX_JSON_INT = 2**53 - 1  # the largest integer a browser's JSON.parse keeps exact
MAX_LOAD_COUNT = 1_000_000  # streams, queue depth: far above any real node
MAX_INFERENCE_MS = 3_600_000.0  # an hour: anything above is a unit mistake


class RegistryError(WebappError):
    """Base of the registry's errors."""


@dataclass(frozen=True)
class FieldError:
    field: str
    detail: str


class HeartbeatError(RegistryError, ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.detail}" for e in errors))


class RegistryFull(RegistryError):
    """A new node while the registry holds its maximum; existing nodes still refresh."""

    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes
        super().__init__(
            f"the registry holds its maximum of {max_nodes} nodes "
            "(EDGESIGHT_REGISTRY_MAX_NODES); a new node is listed once another expires"
        )


class StoreUnavailable(RegistryError):
    """The registry store (Redis) did not answer; the message names no credentials."""


def _text(value: object, *, allow_empty: bool = False) -> str | None:
    """None when ``value`` is fine, else what was expected."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not value and not allow_empty:
        return "expected a non-empty string"
    if len(value) > MAX_TEXT_CHARS:
        return f"expected at most {MAX_TEXT_CHARS} characters, got {len(value)}"
    if not value.isprintable():
        return "expected printable characters only"
    return None


def _node_id(value: object) -> str | None:
    if not isinstance(value, str) or not NODE_ID_PATTERN.fullmatch(value):
        return (
            "expected 1..128 characters of A-Z a-z 0-9 . _ : @ -, starting with a letter "
            f"or digit, got {value!r:.60}"
        )
    return None


def _ws_url(value: object) -> str | None:
    # "{hostname}": what `edgesight serve` registers for a node bound to all interfaces
    return node_url_problem(value, allow_template=True)


def _sha256(value: object) -> str | None:
    if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value):
        return "expected 64 lowercase hex digits"
    return None


def _shown(value: int | float) -> str:
    """A number for a message: never thousands of digits."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _count(value: object, minimum: int = 0, maximum: int = MAX_LOAD_COUNT) -> str | None:
    # bool is an int in Python, but true is not a count in JSON
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {type(value).__name__}"
    if not minimum <= value <= maximum:
        return f"expected an integer from {minimum} to {maximum}, got {_shown(value)}"
    return None


def _ms(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {type(value).__name__}"
    # compared as they are: float() of a 400-digit integer raises OverflowError
    if not (0 <= value <= MAX_INFERENCE_MS) or (isinstance(value, float) and math.isnan(value)):
        return f"expected a number from 0 to {MAX_INFERENCE_MS:.0f} ms, got {_shown(value)}"
    return None


# field -> (check, default); a default of None marks the field required
_FIELDS: dict[str, tuple[Callable[[object], str | None], object]] = {
    "node_id": (_node_id, None),
    "url": (_ws_url, None),
    "name": (_text, None),
    "site": (lambda v: _text(v, allow_empty=True), ""),
    "provider": (_text, None),
    "device": (_text, None),
    "device_memory_bytes": (lambda v: _count(v, maximum=MAX_JSON_INT), 0),
    "model": (_text, None),
    "model_sha256": (_sha256, None),
    "streams": (_count, None),
    "max_streams": (lambda v: _count(v, minimum=1), None),
    "queue_depth": (_count, None),
    "inference_ms": (_ms, None),
    # the latency objective (issue 12): node-time p95 over the node's window (0: no frame
    # came) and the objective it is held to (0: none; nodes that predate objectives)
    "recent_p95_ms": (_ms, 0.0),
    "sla_p95_ms": (_ms, 0.0),
    # WebTransport (issue 16): the node's UDP port on the url's host (0: none) and the
    # SHA-256 of its self-signed certificate, which a page pins ("": a CA-signed one)
    "wt_port": (lambda v: _count(v, maximum=65535), 0),
    "wt_cert_sha256": (lambda v: None if v == "" else _sha256(v), ""),
}
# a heartbeat's fields, in the order pages and metrics list them
ENTRY_FIELDS: tuple[str, ...] = tuple(_FIELDS)


@dataclass(frozen=True)
class NodeEntry:
    """One node's heartbeat: where browsers reach it, what it runs, and how busy it is."""

    node_id: str
    url: str  # the ws:// or wss:// URL browsers connect to
    name: str
    site: str  # a free-form location label ("lab-2", "eu-west"); may be empty
    provider: str  # onnxruntime execution provider, e.g. CUDAExecutionProvider
    device: str  # "cpu", "cuda:0"
    device_memory_bytes: int  # 0: unknown
    model: str
    model_sha256: str
    streams: int
    max_streams: int
    queue_depth: int
    inference_ms: float  # the most recent batch's inference time
    recent_p95_ms: float = 0.0  # node time p95 over the node's SLA window; 0: no frame
    sla_p95_ms: float = 0.0  # the objective for it; 0: none
    wt_port: int = 0  # WebTransport UDP port on the url's host; 0: none
    wt_cert_sha256: str = ""  # hex SHA-256 of its self-signed certificate; "": CA-signed

    @classmethod
    def parse(cls, data: object) -> NodeEntry:
        """Validate a decoded JSON heartbeat. Unknown fields are ignored, so that newer
        nodes can send more than this web app knows about."""
        if not isinstance(data, Mapping):
            raise HeartbeatError(
                [FieldError("body", f"expected a JSON object, got {type(data).__name__}")]
            )
        values: dict[str, Any] = {}
        errors: list[FieldError] = []
        for name, (check, default) in _FIELDS.items():
            if name not in data:
                if default is None:
                    errors.append(FieldError(name, "required"))
                values[name] = default
                continue
            problem = check(data[name])
            if problem:
                errors.append(FieldError(name, problem))
            values[name] = data[name]
        if errors:
            raise HeartbeatError(errors)
        for name in ("inference_ms", "recent_p95_ms", "sla_p95_ms"):
            values[name] = float(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: its deep copy is most of the cost of listing 200 nodes
        return {name: getattr(self, name) for name in _FIELDS}


@dataclass(frozen=True)
class Listed:
    entry: NodeEntry
    age_s: float  # since the last heartbeat


class RegistryStore(Protocol):
    """Where heartbeats are kept. Expiry is the store's job: ``listed()`` returns only
    entries whose last ``put`` is less than its ``ttl_s`` ago."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, entry: NodeEntry, ttl_s: float, max_entries: int) -> bool:
        """Store or refresh ``entry`` for ``ttl_s`` seconds; True when it was not listed.
        ``RegistryFull`` when it was not and ``max_entries`` are listed."""
        ...

    async def remove(self, node_id: str) -> bool:
        """Forget a node at once; True when it was listed."""
        ...

    async def listed(self) -> list[Listed]: ...

    async def live_ids(self, node_ids: list[str]) -> set[str]:
        """Which of ``node_ids`` are listed now: a cost in the ids asked, not in the
        registry's size (a page's token request names at most its list's 16)."""
        ...


@dataclass
class _Held:
    entry: NodeEntry
    seen_s: float
    expires_s: float


class MemoryStore:
    """Entries in a dict, for one web app process; ``clock`` is injectable for tests.

    The dict is kept in order of expiry (every refresh moves its entry to the end; the
    registry gives every entry the same TTL), so expiring is popping from the front:
    O(1) per heartbeat however many nodes are listed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: OrderedDict[str, _Held] = OrderedDict()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self._held.clear()

    def _expire(self, now_s: float) -> None:
        while self._held:
            node_id, held = next(iter(self._held.items()))
            if now_s < held.expires_s:
                break
            del self._held[node_id]
            log.info("node %s expired: no heartbeat in time", node_id)

    def _live(self, node_id: str, now_s: float) -> bool:
        held = self._held.get(node_id)
        return held is not None and now_s < held.expires_s

    async def put(self, entry: NodeEntry, ttl_s: float, max_entries: int) -> bool:
        now_s = self._clock()
        self._expire(now_s)
        is_new = not self._live(entry.node_id, now_s)
        if is_new and len(self._held) - (entry.node_id in self._held) >= max_entries:
            raise RegistryFull(max_entries)
        self._held[entry.node_id] = _Held(entry, now_s, now_s + ttl_s)
        self._held.move_to_end(entry.node_id)
        return is_new

    async def remove(self, node_id: str) -> bool:
        now_s = self._clock()
        self._expire(now_s)
        was_live = self._live(node_id, now_s)
        self._held.pop(node_id, None)
        return was_live

    async def live_ids(self, node_ids: list[str]) -> set[str]:
        now_s = self._clock()
        return {node_id for node_id in node_ids if self._live(node_id, now_s)}

    async def listed(self) -> list[Listed]:
        now_s = self._clock()
        self._expire(now_s)
        return [
            Listed(h.entry, max(0.0, now_s - h.seen_s))
            for h in self._held.values()
            if now_s < h.expires_s
        ]
