"""Registry fixtures: a real redis-server for the session, and the two registry stores behind
one ``backend`` fixture, so that every registry behaviour test runs against both."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.daemons import free_port, logged_process
from webapp.registry_redis import RedisStore
from webapp.registry_store import MemoryStore, RegistryStore

REDIS_SERVER = Path("/usr/bin/redis-server")
READY_LINE = "Ready to accept connections"


@dataclass(frozen=True)
class RedisServer:
    url: str
    process: subprocess.Popen[str]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throw-away redis-server on 127.0.0.1, no persistence. Missing binary: a failure,
    not a skip, so that CI cannot pass without having tested the Redis store."""
    binary = REDIS_SERVER if REDIS_SERVER.is_file() else shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            f"redis-server not found at {REDIS_SERVER} or on PATH: the Redis registry store "
            "is tested against a real server; install it (apt-get install redis-server)"
        )
    port = free_port()
    argv = [
        str(binary),
        *("--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--loglevel", "notice"),
    ]
    with logged_process(argv, READY_LINE, "redis-server", timeout_s=20) as (process, _):
        yield RedisServer(f"redis://127.0.0.1:{port}/0", process)


@dataclass
class FakeClock:
    now_s: float = 1000.0

    def __call__(self) -> float:
        return self.now_s


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock()

    def store(self) -> RegistryStore:
        return MemoryStore(clock=self.clock)

    def advance(self, seconds: float) -> None:
        self.clock.now_s += seconds


class RedisBackend:
    """Time passes for Redis by shortening every node key's TTL (PEXPIRE; a TTL that would
    drop to zero deletes the key, as Redis would), so expiry tests need no waiting."""

    name = "redis"
    _prefixes = itertools.count()

    def __init__(self, server: RedisServer) -> None:
        self.url = server.url
        self.prefix = f"test{next(self._prefixes)}:"
        self.admin = redis.Redis.from_url(server.url, decode_responses=True)

    def store(self) -> RegistryStore:
        return RedisStore.from_url(self.url, prefix=self.prefix)

    def node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def advance(self, seconds: float) -> None:
        for key in self.admin.scan_iter(match=f"{self.prefix}node:*"):
            left_ms = int(self.admin.pttl(key)) - round(seconds * 1000)
            if left_ms > 0:
                self.admin.pexpire(key, left_ms)
            else:
                self.admin.delete(key)


Backend = MemoryBackend | RedisBackend


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    chosen = RedisBackend(request.getfixturevalue("redis_server"))
    try:
        yield chosen
    finally:
        chosen.admin.close()
