"""The web app's Redis connections, made one way for every store that uses Redis (the node
registry, the sessions): a blocking pool of at most ``MAX_CONNECTIONS`` with timeouts, and
the URL as messages may name it (``redacted``: never its password)."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis

__all__ = ["MAX_CONNECTIONS", "TIMEOUT_S", "redacted", "redis_client"]

MAX_CONNECTIONS = 32  # per store, per web app process
TIMEOUT_S = 2.0  # to connect, to get a pooled connection, to answer


def redis_client(url: str) -> aioredis.Redis:
    # Blocking pool: a burst of requests waits for one of a bounded set of connections,
    # where redis-py's default pool would fail the request past 100 connections.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=TIMEOUT_S,
        decode_responses=True,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
    )
    return aioredis.Redis.from_pool(pool)


def redacted(url: str) -> str:
    """A Redis URL without its credentials, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
