"""The node registry: which inference nodes are alive, where they are, and how busy.

Nodes POST a heartbeat (a ``NodeEntry``) every ``heartbeat_interval_s``; a node that misses
``missed_heartbeats`` in a row expires. Entries live in a ``RegistryStore``: ``MemoryStore``
for one web app process, ``RedisStore`` (``registry_redis``) when several web app instances
share one view. Nodes named in the configuration (``node_urls``) are listed too, marked
static, without load.

Errors::

    RegistryError (WebappError)
    ├── HeartbeatError      a heartbeat body that does not validate; names each bad field
    ├── RegistryFull        a new node while ``max_nodes`` are listed
    └── StoreUnavailable    the store could not be reached

What a page gets (``NodeRegistry.listing``) is capped: at most ``list_max`` registered nodes,
best first (same site, then not full, then least expected wait), so a cluster of thousands
of nodes costs a page a few kilobytes and a few probes, not megabytes and thousands.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pyodide_client.node_url import node_url_problem

from . import WebappError
from .settings import WebappSettings
from .sla import SlaJudge

__all__ = [
    "FieldError",
    "HeartbeatError",
    "Listed",
    "MemoryStore",
    "NodeEntry",
    "NodeRegistry",
    "RegistryError",
    "RegistryFull",
    "RegistryStore",
    "StoreUnavailable",
    "open_store",
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


def open_store(settings: WebappSettings) -> RegistryStore:
    """The store the settings ask for: Redis when EDGESIGHT_REDIS_URL is set, else memory."""
    if settings.redis_url:
        from .registry_redis import RedisStore  # deferred: only Redis users load the client

        return RedisStore.from_url(settings.redis_url)
    return MemoryStore()


class NodeRegistry:
    """The registry as the routes see it: a store, the static nodes, and the expiry rule."""

    def __init__(
        self,
        store: RegistryStore,
        static_urls: tuple[str, ...] = (),
        heartbeat_interval_s: float = 2.0,
        missed_heartbeats: int = 3,
        max_nodes: int = 1000,
        list_max: int = 16,
        site: str = "",
        sla_window_s: float = 30.0,
    ) -> None:
        self.store = store
        self.sla = SlaJudge(sla_window_s)  # which nodes miss their latency objective
        self.static_urls = static_urls
        self.heartbeat_interval_s = heartbeat_interval_s
        self.missed_heartbeats = missed_heartbeats
        self.max_nodes = max_nodes
        self.list_max = list_max
        self.site = site  # the web app's own site: listed first when a page names none

    @classmethod
    def from_settings(
        cls, settings: WebappSettings, store: RegistryStore | None = None
    ) -> NodeRegistry:
        return cls(
            store if store is not None else open_store(settings),
            static_urls=settings.node_urls,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            missed_heartbeats=settings.missed_heartbeats,
            max_nodes=settings.registry_max_nodes,
            list_max=settings.list_nodes_max,
            site=settings.site,
            sla_window_s=settings.sla_window_s,
        )

    @property
    def expiry_s(self) -> float:
        return self.heartbeat_interval_s * self.missed_heartbeats

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """The web app's lifespan: the store is opened (Redis is pinged, so a wrong URL
        fails at start-up) and closed with the app; the app owns the store it is given."""
        await self.store.open()
        try:
            yield
        finally:
            await self.store.close()

    async def heartbeat(self, entry: NodeEntry) -> bool:
        is_new = await self.store.put(entry, self.expiry_s, self.max_nodes)
        self.sla.observe(entry.node_id, entry.recent_p95_ms, entry.sla_p95_ms)
        if is_new:
            log.info("node %s registered: %s (%s)", entry.node_id, entry.url, entry.device)
        return is_new

    async def deregister(self, node_id: str) -> bool:
        removed = await self.store.remove(node_id)
        self.sla.forget(node_id)
        if removed:
            log.info("node %s deregistered", node_id)
        return removed

    async def nodes(self) -> list[dict[str, Any]]:
        """Every live registered node (by id), then the static ones, except a static URL
        that a registered node also announces. For metrics and operators, not pages."""
        registered = sorted(await self.store.listed(), key=lambda listed: listed.entry.node_id)
        return self._with_static(registered)

    async def listing(self, site: str | None = None) -> list[dict[str, Any]]:
        """What ``GET /api/nodes`` gives a page: at most ``list_max`` registered nodes, best
        first (see ``rank``; ``site`` defaults to the web app's own), then the static ones."""
        registered = await self.store.listed()
        chosen = heapq.nsmallest(
            self.list_max,
            registered,
            # nodes that hold their latency objective before degraded ones
            key=lambda listed: (
                self.sla.is_degraded(listed.entry.node_id),
                rank(listed.entry, site or self.site),
            ),
        )
        return self._with_static(chosen, announced={listed.entry.url for listed in registered})

    def _with_static(
        self, registered: list[Listed], announced: set[str] | None = None
    ) -> list[dict[str, Any]]:
        if announced is None:
            announced = {listed.entry.url for listed in registered}
        nodes = [
            _public(listed, self.sla.is_degraded(listed.entry.node_id)) for listed in registered
        ]
        nodes += [_static(url) for url in self.static_urls if url not in announced]
        return nodes


def rank(entry: NodeEntry, site: str) -> tuple[bool, bool, float, float, str]:
    """A page's order of preference, smallest first: the page's site first (the registry
    cannot measure a page's latency; the site label is its proxy), then nodes with a free
    stream, then the least expected wait for a new frame (``inference_ms`` per frame
    queued and the frame itself), then the lowest stream use, then the id, so that equal
    nodes are listed in the same order everywhere."""
    is_elsewhere = bool(site) and entry.site != site
    is_full = entry.streams >= entry.max_streams
    wait_ms = entry.inference_ms * (entry.queue_depth + 1)
    return (is_elsewhere, is_full, wait_ms, entry.streams / entry.max_streams, entry.node_id)


def _public(listed: Listed, is_degraded: bool) -> dict[str, Any]:
    fields = listed.entry.to_dict()
    node_id = fields.pop("node_id")
    return {
        "id": node_id,
        **fields,
        "static": False,
        "degraded": is_degraded,  # misses its latency objective (webapp/sla.py)
        "age_s": round(listed.age_s, 3),
    }


def _static(url: str) -> dict[str, Any]:
    # A configured URL may hold "{hostname}", which the page replaces (see settings).
    unknown = dict.fromkeys(f for f in _FIELDS if f not in ("node_id", "url", "name"))
    return {
        "id": f"static:{url}",
        "url": url,
        "name": url,
        **unknown,
        "static": True,
        "degraded": False,
        "age_s": None,
    }
