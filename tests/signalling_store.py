"""A registry store that tells a test thread when a node came and went: the web app's
``MemoryStore`` with two events, for tests that run a real web app and a real node."""

from __future__ import annotations

import threading

from webapp.registry_store import MemoryStore, NodeEntry


class SignallingStore(MemoryStore):
    """The web app's store, telling the test thread when a node came and went."""

    def __init__(self) -> None:
        super().__init__()
        self.registered = threading.Event()
        self.removed = threading.Event()

    async def put(self, entry: NodeEntry, ttl_s: float, max_entries: int) -> bool:
        is_new = await super().put(entry, ttl_s, max_entries)
        self.registered.set()
        return is_new

    async def remove(self, node_id: str) -> bool:
        removed = await super().remove(node_id)
        self.removed.set()
        return removed
