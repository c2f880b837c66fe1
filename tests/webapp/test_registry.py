"""The node registry through its HTTP API, each behaviour against both stores (in-memory
with a fake clock, Redis with TTLs), plus the registry settings."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from webapp.app import create_app
from webapp.registry import NodeRegistry, rank
from webapp.registry_redis import RedisStore
from webapp.registry_routes import MAX_HEARTBEAT_BYTES
from webapp.registry_store import (
    MemoryStore,
    NodeEntry,
    RegistryFull,
    RegistryStore,
    StoreUnavailable,
)
from webapp.settings import SettingsError, WebappSettings

from .conftest import Backend, RedisBackend, RedisServer, free_port

SECRET = "test-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}
SHA = "ab" * 32
# Redis ages are on Redis's clock: real time passes too, more of it on a busy CI machine
AGE_SLACK_S = 0.5
PUBLIC_FIELDS = {
    "id",
    "url",
    "name",
    "site",
    "provider",
    "device",
    "device_memory_bytes",
    "model",
    "model_sha256",
    "streams",
    "max_streams",
    "queue_depth",
    "inference_ms",
    "recent_p95_ms",
    "sla_p95_ms",
    "wt_port",
    "wt_cert_sha256",
    "static",
    "degraded",
    "age_s",
}

MakeClient = Callable[..., TestClient]


def heartbeat(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "node_id": "gpu-1",
        "url": "wss://gpu-1.example:8001/ws",
        "name": "GPU one",
        "site": "lab-2",
        "provider": "CUDAExecutionProvider",
        "device": "cuda:0",
        "device_memory_bytes": 24 * 2**30,
        "model": "nanodet-g-416",
        "model_sha256": SHA,
        "streams": 1,
        "max_streams": 32,
        "queue_depth": 0,
        "inference_ms": 4.5,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.fixture
def make_client(backend: Backend) -> Iterator[MakeClient]:
    """``make_client(**settings)``: a web app on ``backend``'s store, lifespan running."""
    clients: list[TestClient] = []

    def make(**changes: Any) -> TestClient:
        settings = WebappSettings(**{"node_urls": (), "registry_secret": SECRET, **changes})
        client = TestClient(create_app(settings, registry_store=backend.store()))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def listed(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/api/nodes")
    assert response.status_code == 200
    nodes: list[dict[str, Any]] = response.json()["nodes"]
    return nodes


def test_registered_node_is_listed_with_what_a_client_needs(make_client: MakeClient) -> None:
    client = make_client()

    response = client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)

    assert response.status_code == 201
    assert response.json() == {
        "node_id": "gpu-1",
        "heartbeat_interval_s": 2.0,
        "expires_in_s": 6.0,
    }
    [node] = listed(client)
    assert set(node) == PUBLIC_FIELDS
    expected = {k: v for k, v in heartbeat().items() if k != "node_id"}
    assert {k: node[k] for k in expected} == expected
    assert node["id"] == "gpu-1"
    assert node["static"] is False
    assert node["age_s"] == pytest.approx(0.0, abs=AGE_SLACK_S)


def test_heartbeat_refreshes_load(make_client: MakeClient, backend: Backend) -> None:
    client = make_client()
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
    backend.advance(1.0)
    assert listed(client)[0]["age_s"] == pytest.approx(1.0, abs=AGE_SLACK_S)

    again = client.post(
        "/api/nodes/register",
        json=heartbeat(streams=7, queue_depth=3, inference_ms=12.25),
        headers=AUTH,
    )

    assert again.status_code == 200  # known already: a heartbeat, not a registration
    [node] = listed(client)
    assert (node["streams"], node["queue_depth"], node["inference_ms"]) == (7, 3, 12.25)
    assert node["age_s"] == pytest.approx(0.0, abs=AGE_SLACK_S)


def test_node_expires_after_missed_heartbeats(make_client: MakeClient, backend: Backend) -> None:
    client = make_client(heartbeat_interval_s=2.0, missed_heartbeats=3)  # expiry: 6 s
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)

    backend.advance(5.8)  # two heartbeats missed, the third not yet due
    assert [n["id"] for n in listed(client)] == ["gpu-1"]

    backend.advance(0.3)  # the third missed
    assert listed(client) == []


def test_heartbeats_in_time_keep_a_node(make_client: MakeClient, backend: Backend) -> None:
    client = make_client(heartbeat_interval_s=2.0, missed_heartbeats=3)
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
    for _ in range(3):
        backend.advance(5.0)
        client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
    assert [n["id"] for n in listed(client)] == ["gpu-1"]


def test_expired_node_registers_again(make_client: MakeClient, backend: Backend) -> None:
    client = make_client()
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
    backend.advance(7.0)
    assert listed(client) == []

    response = client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)

    assert response.status_code == 201
    assert len(listed(client)) == 1


def test_deregistered_node_is_gone_at_once(make_client: MakeClient) -> None:
    client = make_client()
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
    client.post("/api/nodes/register", json=heartbeat(node_id="gpu-2"), headers=AUTH)

    response = client.delete("/api/nodes/gpu-1", headers=AUTH)

    assert response.status_code == 204
    assert [n["id"] for n in listed(client)] == ["gpu-2"]
    assert client.delete("/api/nodes/gpu-1", headers=AUTH).status_code == 404


def test_deregistration_needs_the_secret(make_client: MakeClient) -> None:
    client = make_client()
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)

    response = client.delete("/api/nodes/gpu-1", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401
    assert len(listed(client)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-secret-0123456789"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": SECRET},
    ],
    ids=["missing", "wrong", "longer", "basic", "no-scheme"],
)
def test_registration_without_the_secret_is_refused_and_logged(
    make_client: MakeClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()

    with caplog.at_level(logging.WARNING, logger="webapp.registry_routes"):
        response = client.post("/api/nodes/register", json=heartbeat(), headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert listed(client) == []
    [record] = [r for r in caplog.records if r.name == "webapp.registry_routes"]
    assert "testclient" in record.getMessage()  # the source address
    assert "/api/nodes/register" in record.getMessage()
    assert SECRET not in caplog.text
    assert SECRET not in response.text


def test_registration_is_off_without_a_configured_secret(make_client: MakeClient) -> None:
    client = make_client(registry_secret="", node_urls=("ws://{hostname}:8001/ws",))

    response = client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)

    assert response.status_code == 403
    assert "EDGESIGHT_REGISTRY_SECRET" in response.json()["error"]
    assert client.delete("/api/nodes/gpu-1", headers=AUTH).status_code == 403
    assert [n["url"] for n in listed(client)] == ["ws://{hostname}:8001/ws"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"node_id": ...}, "node_id"),
        ({"node_id": "a/b"}, "node_id"),
        ({"node_id": "x" * 129}, "node_id"),
        ({"url": "http://gpu-1:8001/ws"}, "url"),
        ({"url": "ws://"}, "url"),
        ({"name": ""}, "name"),
        ({"site": 3}, "site"),
        ({"model_sha256": "abc"}, "model_sha256"),
        ({"streams": -1}, "streams"),
        ({"streams": True}, "streams"),
        ({"streams": 1.5}, "streams"),
        ({"max_streams": 0}, "max_streams"),
        ({"queue_depth": "2"}, "queue_depth"),
        ({"inference_ms": "fast"}, "inference_ms"),
        ({"inference_ms": -1}, "inference_ms"),
        ({"device_memory_bytes": 2**60}, "device_memory_bytes"),
        ({"provider": "CPU\nExecutionProvider"}, "provider"),
    ],
)
def test_bad_heartbeat_is_422_naming_the_field(
    make_client: MakeClient, changes: dict[str, Any], field: str
) -> None:
    client = make_client()

    response = client.post("/api/nodes/register", json=heartbeat(**changes), headers=AUTH)

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["detail"]
    assert listed(client) == []


def test_every_missing_field_is_named(make_client: MakeClient) -> None:
    client = make_client()
    response = client.post("/api/nodes/register", json={"node_id": "gpu-1"}, headers=AUTH)
    assert response.status_code == 422
    named = {e["field"] for e in response.json()["errors"]}
    # site, device_memory_bytes and the latency objective's figures may be left out; the
    # rest is what a client chooses by
    optional = {"site", "device_memory_bytes", "recent_p95_ms", "sla_p95_ms"}
    optional |= {"wt_port", "wt_cert_sha256"}  # nodes without WebTransport (issue 16)
    assert named == PUBLIC_FIELDS - {"id", "static", "degraded", "age_s", *optional}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_a_body_that_is_no_json_object_is_422_naming_the_body(
    make_client: MakeClient, body: bytes
) -> None:
    client = make_client()
    response = client.post("/api/nodes/register", content=body, headers=AUTH)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body"]


def _nested(depth: int) -> bytes:
    return b'{"node_id": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        # each of these answered 500 with a traceback before (issue 8)
        (json.dumps(heartbeat(inference_ms=10**400)).encode(), "from 0 to 3600000 ms"),
        (json.dumps(heartbeat(url="ws://[::1/ws")).encode(), "IPv6 address in brackets"),
        (_nested(5000), "nested at most"),
        (_nested(20), "nested at most"),
        (json.dumps(heartbeat(streams=10**400)).encode(), "from 0 to 1000000"),
        (b'{"queue_depth": 1' + b"0" * 5000 + b"}", "smaller numbers"),
        (json.dumps(heartbeat(inference_ms=float("nan"))).encode(), "got NaN"),
        (json.dumps(heartbeat(inference_ms=float("inf"))).encode(), "got Infinity"),
        (b'{"inference_ms": 1e400}', "got inf"),
        (json.dumps(heartbeat(url="ws://0:99999/ws")).encode(), "port from 1 to 65535"),
        (json.dumps(heartbeat(url="ws://gpu-1:8001/ws#x")).encode(), "fragment"),
        (json.dumps(heartbeat(url="ws://me@gpu-1:8001/ws")).encode(), "user name"),
        (json.dumps(heartbeat(url=["ws://gpu-1/ws"])).encode(), "got list"),
        (json.dumps(heartbeat(name="n" * 201)).encode(), "at most 200 characters"),
        (json.dumps(heartbeat(**{f"x{i}": i for i in range(100)})).encode(), "at most 64 fields"),
        (b'"' + b"a" * 1000 + b'"', "expected a JSON object"),
        (b"[" * 3000 + b"]" * 3000, "nested at most"),
    ],
)
def test_every_bad_body_is_4xx_with_a_message(
    make_client: MakeClient, body: bytes, detail: str
) -> None:
    client = make_client()

    response = client.post(
        "/api/nodes/register",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    details = " ".join(e["detail"] for e in response.json()["errors"])
    assert detail in details
    assert "Traceback" not in response.text
    assert listed(client) == []


def test_an_oversized_heartbeat_is_413(make_client: MakeClient) -> None:
    client = make_client()
    body = heartbeat(padding="x" * MAX_HEARTBEAT_BYTES)
    response = client.post("/api/nodes/register", json=body, headers=AUTH)
    assert response.status_code == 413
    assert listed(client) == []


def test_static_nodes_are_listed_unless_a_registered_node_announces_them(
    make_client: MakeClient,
) -> None:
    static = ("ws://{hostname}:8001/ws", "wss://gpu-1.example:8001/ws")
    client = make_client(node_urls=static)
    before = listed(client)
    assert [(n["url"], n["static"]) for n in before] == [(url, True) for url in static]
    assert set(before[0]) == PUBLIC_FIELDS
    assert before[0]["streams"] is None
    assert before[0]["age_s"] is None

    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)  # the second one

    after = listed(client)
    assert [(n["url"], n["static"]) for n in after] == [
        ("wss://gpu-1.example:8001/ws", False),
        ("ws://{hostname}:8001/ws", True),
    ]


def test_the_listing_is_public_and_never_cached(make_client: MakeClient) -> None:
    client = make_client()
    client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
    response = client.get("/api/nodes")  # no Authorization
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["heartbeat_interval_s"] == 2.0


def test_two_web_apps_on_one_redis_share_one_view(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server)
    settings = WebappSettings(node_urls=(), registry_secret=SECRET)
    with (
        TestClient(create_app(settings, registry_store=backend.store())) as first,
        TestClient(create_app(settings, registry_store=backend.store())) as second,
    ):
        first.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
        assert [n["id"] for n in listed(second)] == ["gpu-1"]
        second.delete("/api/nodes/gpu-1", headers=AUTH)
        assert listed(first) == []
    backend.admin.close()


def test_redis_expires_a_node_by_its_own_ttl(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server)
    settings = WebappSettings(
        node_urls=(), registry_secret=SECRET, heartbeat_interval_s=2.0, missed_heartbeats=3
    )
    with TestClient(create_app(settings, registry_store=backend.store())) as client:
        client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
        pttl_ms = int(backend.admin.pttl(backend.node_key("gpu-1")))
        assert 5000 < pttl_ms <= 6000

        # A node on a 50 ms interval, two misses allowed: Redis drops it 100 ms later.
        fast = replace(settings, heartbeat_interval_s=0.05, missed_heartbeats=2)
        with TestClient(create_app(fast, registry_store=backend.store())) as fast_client:
            fast_client.post("/api/nodes/register", json=heartbeat(), headers=AUTH)
            pttl_ms = int(backend.admin.pttl(backend.node_key("gpu-1")))
            assert 0 < pttl_ms <= 100
            deadline = time.monotonic() + 10
            poll = threading.Event()  # never set: a bounded pause between polls
            index = f"{backend.prefix}nodes"
            # gone from the listing, and from the index by the listing after the key expired
            while listed(fast_client) or backend.admin.scard(index):
                assert time.monotonic() < deadline, "Redis did not expire the node key"
                poll.wait(0.02)
        assert not backend.admin.exists(backend.node_key("gpu-1"))
    backend.admin.close()


def test_an_unreachable_redis_fails_without_naming_the_password() -> None:
    store = RedisStore.from_url(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable, match="EDGESIGHT_REDIS_URL") as raised:
        asyncio.run(store.open())
    assert "hunter2" not in str(raised.value)


# -- settings ---------------------------------------------------------------------------


def test_registry_settings_come_from_the_environment() -> None:
    settings = WebappSettings.from_env(
        {
            "EDGESIGHT_REGISTRY_SECRET": SECRET,
            "EDGESIGHT_REDIS_URL": "redis://:pw@10.0.0.5:6379/2",
            "EDGESIGHT_HEARTBEAT_INTERVAL_S": "0.5",
            "EDGESIGHT_MISSED_HEARTBEATS": "4",
        }
    )
    assert settings.registry_secret == SECRET
    assert settings.heartbeat_interval_s == 0.5
    assert settings.missed_heartbeats == 4
    assert NodeRegistry.from_settings(settings, MemoryStore()).expiry_s == 2.0
    assert SECRET not in repr(settings)
    assert "pw@" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"EDGESIGHT_HEARTBEAT_INTERVAL_S": "soon"}, "EDGESIGHT_HEARTBEAT_INTERVAL_S"),
        ({"EDGESIGHT_HEARTBEAT_INTERVAL_S": "0"}, "EDGESIGHT_HEARTBEAT_INTERVAL_S"),
        ({"EDGESIGHT_MISSED_HEARTBEATS": "0"}, "EDGESIGHT_MISSED_HEARTBEATS"),
        ({"EDGESIGHT_REDIS_URL": "http://:pw@host"}, "EDGESIGHT_REDIS_URL"),
        ({"EDGESIGHT_REGISTRY_SECRET": "short-pw"}, "EDGESIGHT_REGISTRY_SECRET"),
        ({"EDGESIGHT_REGISTRY_MAX_NODES": "0"}, "EDGESIGHT_REGISTRY_MAX_NODES"),
        ({"EDGESIGHT_LIST_NODES_MAX": "many"}, "EDGESIGHT_LIST_NODES_MAX"),
        ({"EDGESIGHT_LIST_NODES_MAX": "0"}, "EDGESIGHT_LIST_NODES_MAX"),
        ({"EDGESIGHT_SITE": "lab\n2"}, "EDGESIGHT_SITE"),
    ],
)
def test_bad_registry_settings_name_the_key_and_hide_secrets(
    environ: dict[str, str], key: str
) -> None:
    with pytest.raises(SettingsError, match=key) as raised:
        WebappSettings.from_env(environ)
    assert "pw" not in str(raised.value)


def test_a_store_that_stops_answering_is_503_not_a_crash() -> None:
    # no lifespan (no start-up ping), as if Redis went away after the app started
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    client = TestClient(create_app(WebappSettings(registry_secret=SECRET), registry_store=store))

    assert client.get("/api/nodes").status_code == 503
    assert client.post("/api/nodes/register", json=heartbeat(), headers=AUTH).status_code == 503
    assert client.delete("/api/nodes/gpu-1", headers=AUTH).status_code == 503


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://0:99999/ws", "port from 1 to 65535"),
        ("ws://[::1/ws", "IPv6 address in brackets"),
        ("ws://node:8001/ws#here", "no fragment"),
        ("http://node:8001/ws", "ws:// or wss://"),
    ],
)
def test_a_static_node_url_browsers_refuse_stops_the_web_app_at_start(
    url: str, expected: str
) -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_NODE_URLS") as raised:
        WebappSettings.from_env({"EDGESIGHT_NODE_URLS": f"ws://{{hostname}}:8001/ws, {url}"})
    assert expected in str(raised.value)


# -- size: what the registry holds and what it lists (issue 8: 5000 nodes, 1.77 MB) ---------


def entry(node_id: str, **changes: Any) -> NodeEntry:
    body = heartbeat(node_id=node_id, url=f"ws://{node_id}.example:8001/ws", **changes)
    return NodeEntry.parse(body)


@pytest.fixture
def make_app(backend: Backend) -> Iterator[Callable[..., tuple[TestClient, RegistryStore]]]:
    """Like ``make_client``, also handing back the store, for filling it directly."""
    clients: list[TestClient] = []

    def make(**changes: Any) -> tuple[TestClient, RegistryStore]:
        settings = WebappSettings(**{"node_urls": (), "registry_secret": SECRET, **changes})
        store = backend.store()
        client = TestClient(create_app(settings, registry_store=store))
        client.__enter__()
        clients.append(client)
        return client, store

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_5000_nodes_cost_a_page_16_entries_best_first(
    make_app: Callable[..., tuple[TestClient, RegistryStore]],
) -> None:
    client, store = make_app(registry_max_nodes=5000, site="lab-2")

    async def register_5000() -> None:
        for i in range(4997):
            busy = {"queue_depth": 1 + i % 7, "inference_ms": 5.0 + i % 11}
            await store.put(entry(f"n{i:04d}", site=f"site-{i % 50}", **busy), 60.0, 5000)
        # a few near and idle, one near and full
        for name in ("near-b", "near-a"):
            await store.put(entry(name, site="lab-2", inference_ms=4.0, queue_depth=0), 60.0, 5000)
        await store.put(entry("near-full", site="lab-2", streams=32), 60.0, 5000)

    client.portal.call(register_5000)
    with pytest.raises(RegistryFull):
        client.portal.call(store.put, entry("one-more"), 60.0, 5000)

    response = client.get("/api/nodes")

    assert response.status_code == 200
    assert len(response.content) < 16 * 1024  # was 1.77 MB
    nodes = response.json()["nodes"]
    assert len(nodes) == 16
    ids = [n["id"] for n in nodes]
    assert ids[:3] == ["near-a", "near-b", "near-full"]  # same site first, full last of them
    far = nodes[3:]
    assert all(n["site"] != "lab-2" for n in far)
    waits = [n["inference_ms"] * (n["queue_depth"] + 1) for n in far]
    assert waits == sorted(waits)


def test_a_page_may_ask_for_its_own_site_first(make_client: MakeClient) -> None:
    client = make_client(list_nodes_max=2, site="lab-2")
    for node_id, site, load in (("a", "lab-2", 9), ("b", "eu", 0), ("c", "eu", 3)):
        body = heartbeat(
            node_id=node_id, url=f"ws://{node_id}:8001/ws", site=site, queue_depth=load
        )
        client.post("/api/nodes/register", json=body, headers=AUTH)

    assert [n["id"] for n in listed(client)] == ["a", "b"]  # the web app's own site first
    eu = client.get("/api/nodes", params={"site": "eu"}).json()["nodes"]
    assert [n["id"] for n in eu] == ["b", "c"]
    assert client.get("/api/nodes", params={"site": "x" * 201}).status_code == 400


def test_static_nodes_are_listed_besides_the_cap(make_client: MakeClient) -> None:
    client = make_client(list_nodes_max=1, node_urls=("ws://static-1:8001/ws",))
    for node_id in ("a", "b"):
        body = heartbeat(node_id=node_id, url=f"ws://{node_id}:8001/ws")
        client.post("/api/nodes/register", json=body, headers=AUTH)

    assert [n["id"] for n in listed(client)] == ["a", "static:ws://static-1:8001/ws"]


def test_a_full_registry_refuses_new_nodes_with_503_and_keeps_refreshing_old_ones(
    make_client: MakeClient, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(registry_max_nodes=2)
    for node_id in ("a", "b"):
        body = heartbeat(node_id=node_id, url=f"ws://{node_id}:8001/ws")
        assert client.post("/api/nodes/register", json=body, headers=AUTH).status_code == 201

    with caplog.at_level("WARNING", logger="webapp.registry_routes"):
        refused = client.post(
            "/api/nodes/register", json=heartbeat(node_id="c", url="ws://c:8001/ws"), headers=AUTH
        )

    assert refused.status_code == 503
    assert "maximum of 2 nodes (EDGESIGHT_REGISTRY_MAX_NODES)" in refused.json()["error"]
    assert refused.headers["retry-after"] == "6"
    assert "refused 1 new node(s), e.g. c" in caplog.text
    again = client.post(
        "/api/nodes/register", json=heartbeat(node_id="a", url="ws://a:8001/ws"), headers=AUTH
    )
    assert again.status_code == 200
    backend.advance(7.0)  # a and b expire: room again
    late = client.post(
        "/api/nodes/register", json=heartbeat(node_id="c", url="ws://c:8001/ws"), headers=AUTH
    )
    assert late.status_code == 201


def test_rank_prefers_site_then_a_free_stream_then_the_least_wait() -> None:
    near_busy = entry("a", site="lab", queue_depth=5, inference_ms=10.0)
    far_idle = entry("b", site="eu", queue_depth=0, inference_ms=1.0)
    near_full = entry("c", site="lab", streams=32, max_streams=32)
    near_idle = entry("d", site="lab", queue_depth=0, inference_ms=10.0)
    order = sorted([near_busy, far_idle, near_full, near_idle], key=lambda e: rank(e, "lab"))
    assert [e.node_id for e in order] == ["d", "a", "c", "b"]
    no_site = sorted([near_busy, far_idle, near_idle], key=lambda e: rank(e, ""))
    assert [e.node_id for e in no_site] == ["b", "d", "a"]


def test_refusals_of_a_full_registry_are_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from webapp.registry_routes import _RefusalLog

    now = [0.0]
    refusals = _RefusalLog(every_s=60.0, clock=lambda: now[0])
    full = RegistryFull(2)
    with caplog.at_level("WARNING", logger="webapp.registry_routes"):
        refusals.refused("a", full)  # the first: at once
        for second in range(1, 60):
            now[0] = float(second)
            refusals.refused("b", full)
            refusals.refused("c", full)
        now[0] = 60.0
        refusals.refused("d", full)  # a minute on: one summary of what came meanwhile

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("registry: refused 1 new node(s), e.g. a")
    assert lines[1].startswith("registry: refused 3 new node(s), e.g. d")


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("wt_port", 70000, "expected an integer from 0 to 65535"),
        ("wt_port", "443", "expected an integer"),
        ("wt_cert_sha256", "AB" * 32, "expected 64 lowercase hex digits"),
        ("wt_cert_sha256", None, "expected 64 lowercase hex digits"),
    ],
)
def test_a_bad_webtransport_offer_is_refused_naming_the_field(
    make_client: MakeClient, field: str, value: object, problem: str
) -> None:
    client = make_client()
    response = client.post("/api/nodes/register", json=heartbeat(**{field: value}), headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert problem in error["detail"]


def test_the_webtransport_offer_reaches_the_pages(make_client: MakeClient) -> None:
    client = make_client()
    offer = {"wt_port": 4433, "wt_cert_sha256": SHA}
    assert client.post("/api/nodes/register", json=heartbeat(**offer), headers=AUTH).is_success
    [node] = listed(client)
    assert (node["wt_port"], node["wt_cert_sha256"]) == (4433, SHA)
