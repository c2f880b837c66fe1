"""The Redis registry store: one key per node with a millisecond TTL, so that several web app
instances share one view and Redis itself drops a node that stops heartbeating.

Layout, under a prefix (default ``edgesight:registry:``)::

    node:<node_id>   JSON {"entry": {...}, "ttl_ms": N}, SET ... PX N on every heartbeat
    nodes            a set of node ids, for listing without SCAN over the whole keyspace

A heartbeat is one Lua script too, so that the size limit (``max_entries``) holds with
several web app instances registering at once.

A node's age is ``ttl_ms - PTTL``: Redis's clock, not the web app's, so instances whose
clocks disagree still agree on ages. Listing is one Lua script (one round trip, atomic): it
reads every listed key with its PTTL and removes the ids whose key has expired. The script
builds key names from the prefix, so the store wants a plain Redis, not Redis Cluster.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .redis_pool import redacted, redis_client
from .registry_store import HeartbeatError, Listed, NodeEntry, RegistryFull, StoreUnavailable

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "edgesight:registry:"

# KEYS[1]: the id set; ARGV[1]: the node key prefix.
# Returns {{id, value, pttl_ms, id, value, pttl_ms, ...}, {expired id, ...}}.
_LIST = """
local listed, expired = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. id
  local value = redis.call('GET', key)
  if value then
    listed[#listed + 1] = id
    listed[#listed + 1] = value
    listed[#listed + 1] = redis.call('PTTL', key)
  else
    redis.call('SREM', KEYS[1], id)
    expired[#expired + 1] = id
  end
end
return {listed, expired}
"""

# KEYS[1]: the node's key, KEYS[2]: the id set; ARGV: value, ttl_ms, max entries, id, prefix.
# Returns 1 (new), 0 (refreshed) or -1 (new, and the registry is full). The id set may hold
# ids whose keys expired since the last listing: when it looks full, those are dropped first.
_PUT = """
local existed = redis.call('EXISTS', KEYS[1])
if existed == 0 and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[5] .. id) == 0 then redis.call('SREM', KEYS[2], id) end
  end
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return 1 - existed
"""


class RedisStore:
    def __init__(
        self, client: aioredis.Redis, prefix: str = DEFAULT_PREFIX, where: str = "redis"
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._where = where  # for messages: never the URL itself, it may hold a password
        self._index = f"{prefix}nodes"
        self._list = client.register_script(_LIST)
        self._put = client.register_script(_PUT)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisStore:
        return cls(redis_client(url), prefix, where=redacted(url))

    def node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _unavailable(self, exc: RedisError) -> StoreUnavailable:
        log.error("registry store %s failed: %s", self._where, type(exc).__name__)
        return StoreUnavailable(f"Redis at {self._where} (EDGESIGHT_REDIS_URL) did not answer")

    async def open(self) -> None:
        try:
            await self._client.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from None

    async def close(self) -> None:
        await self._client.aclose()

    async def put(self, entry: NodeEntry, ttl_s: float, max_entries: int) -> bool:
        ttl_ms = max(1, round(ttl_s * 1000))
        value = json.dumps({"entry": entry.to_dict(), "ttl_ms": ttl_ms})
        try:
            outcome = await self._put(
                keys=[self.node_key(entry.node_id), self._index],
                args=[value, ttl_ms, max_entries, entry.node_id, self.node_key("")],
            )
        except RedisError as exc:
            raise self._unavailable(exc) from None
        if outcome == -1:
            raise RegistryFull(max_entries)
        return bool(outcome)

    async def remove(self, node_id: str) -> bool:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self.node_key(node_id))
                pipe.srem(self._index, node_id)
                deleted, _ = await pipe.execute()
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return bool(deleted)

    async def live_ids(self, node_ids: list[str]) -> set[str]:
        if not node_ids:
            return set()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for node_id in node_ids:
                    pipe.exists(self.node_key(node_id))
                found = await pipe.execute()
        except RedisError as exc:
            raise self._unavailable(exc) from None
        return {node_id for node_id, exists in zip(node_ids, found, strict=True) if exists}

    async def listed(self) -> list[Listed]:
        try:
            found, expired = await self._list(keys=[self._index], args=[self.node_key("")])
        except RedisError as exc:
            raise self._unavailable(exc) from None
        if expired:  # only the instance whose script removed them logs them
            log.info("nodes expired: no heartbeat in time: %s", ", ".join(expired))
        listed = []
        for node_id, value, pttl_ms in zip(found[::3], found[1::3], found[2::3], strict=True):
            if pttl_ms > 0:
                held = _decode(node_id, value)
                if held is not None:
                    entry, ttl_ms = held
                    listed.append(Listed(entry, max(0.0, (ttl_ms - pttl_ms) / 1000)))
        return listed


def _decode(node_id: str, value: str) -> tuple[NodeEntry, int] | None:
    """An entry written by this or another web app version; None (and a warning) when it
    cannot be read, rather than failing the whole listing."""
    try:
        held: Any = json.loads(value)
        return NodeEntry.parse(held["entry"]), int(held["ttl_ms"])
    except (ValueError, TypeError, KeyError, HeartbeatError) as exc:
        log.warning("node %s: unreadable registry entry skipped: %s", node_id, exc)
        return None
