"""Sign-out ends the session (issue 17, item 5): after POST /logout the old cookie gets
neither the page nor stream tokens, in one web app (memory store) and across two web app
instances that share one Redis."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from tests.daemons import free_port
from tests.webapp.conftest import RedisServer
from webapp.app import create_app
from webapp.sessions import MemorySessions, RedisSessions, SessionStore
from webapp.settings import WebappSettings
from webapp.signin import SESSION_COOKIE
from webapp.users import Users

BASE = "https://edge.example"
PASSWORD = "correct horse battery"
_prefixes = itertools.count()


@pytest.fixture
def settings(tmp_path: Path) -> WebappSettings:
    users_file = tmp_path / "users.json"
    users = Users()
    users.set_password("alice", PASSWORD, n=2**10)
    users.save(users_file)
    return WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",  # one key: both instances sign alike
        users_file=users_file,
        auth_modes=("users",),
    )


def _client(settings: WebappSettings, store: SessionStore) -> TestClient:
    return TestClient(
        create_app(settings, session_store=store), base_url=BASE, follow_redirects=False
    )


def _sign_in(client: TestClient) -> str:
    response = client.post("/login", data={"user": "alice", "password": PASSWORD})
    assert response.status_code == 303
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    return cookie


def _has_access(client: TestClient, cookie: str) -> tuple[int, int]:
    """(page status, token status) for a browser that presents ``cookie``."""
    client.cookies.set(SESSION_COOKIE, cookie)
    page = client.get("/").status_code
    token = client.post("/api/token", headers={"Origin": BASE}).status_code
    return page, token


def test_sign_out_ends_the_session_for_the_old_cookie(settings: WebappSettings) -> None:
    with _client(settings, MemorySessions()) as client:
        cookie = _sign_in(client)
        assert _has_access(client, cookie) == (200, 200)
        out = client.post("/logout")
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        # a copy of the cookie kept from before (another tab, a stolen copy)
        assert _has_access(client, cookie) == (303, 401)
        assert client.post("/logout").status_code == 303  # signing out twice is harmless


def test_a_signed_cookie_without_a_session_on_record_is_refused(
    settings: WebappSettings,
) -> None:
    # e.g. a cookie from before an in-memory web app restarted: validly signed, not live
    with _client(settings, MemorySessions()) as first:
        cookie = _sign_in(first)
    with _client(settings, MemorySessions()) as restarted:
        assert _has_access(restarted, cookie) == (303, 401)


def test_the_memory_store_is_bounded_and_expires() -> None:
    clock_s = [0.0]
    store = MemorySessions(max_sessions=3, clock=lambda: clock_s[0])

    async def scenario() -> None:
        for sid in ("a", "b", "c", "d"):
            await store.add(sid, ttl_s=60)
        assert len(store) == 3
        assert not await store.is_live("a")  # the oldest made room
        assert await store.is_live("d")
        clock_s[0] = 61
        assert not await store.is_live("d")
        await store.add("e", ttl_s=60)
        assert len(store) == 1

    asyncio.run(scenario())


@pytest.fixture
def redis_stores(redis_server: RedisServer) -> tuple[RedisSessions, RedisSessions]:
    prefix = f"test-sessions{next(_prefixes)}:"
    return (
        RedisSessions.from_url(redis_server.url, prefix=prefix),
        RedisSessions.from_url(redis_server.url, prefix=prefix),
    )


def test_two_instances_sharing_redis_agree_on_sign_out(
    settings: WebappSettings, redis_stores: tuple[RedisSessions, RedisSessions]
) -> None:
    store_a, store_b = redis_stores
    with _client(settings, store_a) as instance_a, _client(settings, store_b) as instance_b:
        cookie = _sign_in(instance_a)
        assert _has_access(instance_b, cookie) == (200, 200)  # signed in on A, known on B
        instance_b.post("/logout")  # signed out on B ...
        assert _has_access(instance_a, cookie) == (303, 401)  # ... is out on A too


def test_redis_sessions_live_for_the_session_lifetime(
    settings: WebappSettings,
    redis_stores: tuple[RedisSessions, RedisSessions],
    redis_server: RedisServer,
) -> None:
    store, _ = redis_stores
    with _client(settings, store) as client:
        _sign_in(client)
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = list(admin.scan_iter(match=f"{store.prefix}*"))
        assert len(keys) == 1
        ttl_ms = int(admin.pttl(keys[0]))
        assert 0 < ttl_ms <= settings.session_lifetime_s * 1000
    finally:
        admin.close()


def test_an_unreachable_session_store_is_a_503_not_a_way_in(
    settings: WebappSettings,
) -> None:
    store = RedisSessions.from_url(f"redis://127.0.0.1:{free_port()}/0")
    client = _client(settings, store)  # no lifespan: the store is not pinged at start
    client.cookies.set(SESSION_COOKIE, "x.y")  # not even a valid cookie: no store lookup
    assert client.get("/").status_code == 303
    with _client(settings, MemorySessions()) as other:
        cookie = _sign_in(other)  # a validly signed cookie: the store must be asked
    client.cookies.set(SESSION_COOKIE, cookie)
    page = client.get("/")
    assert page.status_code == 503
    assert "session store" in page.text
    assert client.post("/api/token", headers={"Origin": BASE}).status_code == 503


def test_a_kiosk_session_ends_when_its_key_is_replaced(tmp_path: Path) -> None:
    # With a store that outlives restarts (Redis), the record alone would keep a kiosk in
    # that was signed in with a key since replaced (`edgesight users kiosk NAME` again).
    users_file = tmp_path / "users.json"
    users = Users()
    key = users.add_kiosk("lobby")
    users.save(users_file)
    settings = WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        users_file=users_file,
        auth_modes=("kiosk-key",),
    )
    store = MemorySessions()  # shared, as Redis would be across a restart
    with _client(settings, store) as before:
        assert before.get(f"/kiosk?key={key}").status_code == 303
        cookie = before.cookies.get(SESSION_COOKIE)
        assert cookie
        assert before.get("/kiosk").status_code == 200
    users.add_kiosk("lobby")  # a new key; the web app restarts to read it
    users.save(users_file)
    with _client(settings, store) as after:
        after.cookies.set(SESSION_COOKIE, cookie)
        assert after.get("/kiosk").status_code == 401
