"""Live sessions: a server-side record of every signed-in browser, so that signing out ends
the session (issue 17, item 5) instead of leaving a cookie that works until it expires.

The cookie names its session by a random id (``sid``, 128 bits); the record is that id
with the session's lifetime as its TTL. A cookie whose id is not on record (signed out,
expired, or issued before a restart of an in-memory store) is no session.

    MemorySessions  one web app process; its sessions end when the process does
    RedisSessions   ``EDGESIGHT_REDIS_URL``: several web app instances agree, and sessions
                    outlive restarts. One key per session, ``SET ... PX <lifetime>``.

Both are bounded: the memory store holds at most ``max_sessions`` (the oldest session is
ended first when more sign in); Redis keys expire by themselves.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import WebappError
from .redis_pool import redacted, redis_client

__all__ = [
    "DEFAULT_PREFIX",
    "MemorySessions",
    "RedisSessions",
    "SessionStore",
    "SessionStoreUnavailable",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "edgesight:session:"


class SessionStoreUnavailable(WebappError):
    """The session store (Redis) did not answer; the message names no credentials."""


class SessionStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, sid: str, ttl_s: float) -> None: ...

    async def is_live(self, sid: str) -> bool: ...

    async def end(self, sid: str) -> bool:
        """True when the session was live."""
        ...


class MemorySessions:
    """Session ids in a dict kept in order of expiry (every session has the same TTL, so
    adding appends and expiring pops from the front)."""

    def __init__(
        self, max_sessions: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sessions = max_sessions
        self._clock = clock
        self._expires: OrderedDict[str, float] = OrderedDict()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _expire(self, now_s: float) -> None:
        while self._expires:
            sid, expires_s = next(iter(self._expires.items()))
            if expires_s > now_s:
                return
            del self._expires[sid]

    async def add(self, sid: str, ttl_s: float) -> None:
        now_s = self._clock()
        self._expire(now_s)
        self._expires[sid] = now_s + ttl_s
        self._expires.move_to_end(sid)
        if len(self._expires) > self.max_sessions:
            self._expires.popitem(last=False)
            log.warning("more than %d live sessions: the oldest one was ended", self.max_sessions)

    async def is_live(self, sid: str) -> bool:
        expires_s = self._expires.get(sid)
        return expires_s is not None and expires_s > self._clock()

    async def end(self, sid: str) -> bool:
        return self._expires.pop(sid, None) is not None

    def __len__(self) -> int:
        return len(self._expires)


class RedisSessions:
    def __init__(
        self, client: aioredis.Redis, prefix: str = DEFAULT_PREFIX, where: str = "redis"
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._where = where  # never the URL itself: it may hold a password

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisSessions:
        return cls(redis_client(url), prefix, where=redacted(url))

    def key(self, sid: str) -> str:
        return f"{self.prefix}{sid}"

    def _unavailable(self, exc: RedisError) -> SessionStoreUnavailable:
        log.error("session store %s failed: %s", self._where, type(exc).__name__)
        return SessionStoreUnavailable(
            f"Redis at {self._where} (EDGESIGHT_REDIS_URL) did not answer"
        )

    async def open(self) -> None:
        try:
            await self._client.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from None

    async def close(self) -> None:
        await self._client.aclose()

    async def add(self, sid: str, ttl_s: float) -> None:
        try:
            await self._client.set(self.key(sid), "1", px=max(1, round(ttl_s * 1000)))
        except RedisError as exc:
            raise self._unavailable(exc) from None

    async def is_live(self, sid: str) -> bool:
        try:
            return bool(await self._client.exists(self.key(sid)))
        except RedisError as exc:
            raise self._unavailable(exc) from None

    async def end(self, sid: str) -> bool:
        try:
            return bool(await self._client.delete(self.key(sid)))
        except RedisError as exc:
            raise self._unavailable(exc) from None
