"""The node registry: which inference nodes are alive, where they are, and how busy.

Nodes POST a heartbeat (a ``NodeEntry``) every ``heartbeat_interval_s``; a node that misses
``missed_heartbeats`` in a row expires. Entries live in a ``RegistryStore``: ``MemoryStore``
for one web app process, ``RedisStore`` (``registry_redis``) when several web app instances
share one view; the entries, their errors and the store seam are ``registry_store``'s. Nodes
named in the configuration (``node_urls``) are listed too, marked static, without load.

What a page gets (``NodeRegistry.listing``) is capped: at most ``list_max`` registered nodes,
best first (same site, then not full, then least expected wait), so a cluster of thousands
of nodes costs a page a few kilobytes and a few probes, not megabytes and thousands.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import AsyncIterator
from typing import Any

from .registry_store import ENTRY_FIELDS, Listed, MemoryStore, NodeEntry, RegistryStore
from .settings import WebappSettings
from .sla import SlaJudge

__all__ = ["NodeRegistry", "open_store", "rank"]

log = logging.getLogger(__name__)


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
        """How long a node stays listed after its last heartbeat."""
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
    unknown = dict.fromkeys(f for f in ENTRY_FIELDS if f not in ("node_id", "url", "name"))
    return {
        "id": f"static:{url}",
        "url": url,
        "name": url,
        **unknown,
        "static": True,
        "degraded": False,
        "age_s": None,
    }
