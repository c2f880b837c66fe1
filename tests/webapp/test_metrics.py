"""The web app's /metrics and POST /api/report: registry counts, heartbeat answers, store
failures, expiries, and pages' reports that cannot add series."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from webapp.app import create_app
from webapp.metrics import WebappMetrics
from webapp.registry import NodeRegistry
from webapp.registry_redis import RedisStore
from webapp.registry_store import MemoryStore, NodeEntry
from webapp.report import MAX_REPORT_BYTES, ReportLimiter, parse_report
from webapp.settings import WebappSettings

from .conftest import free_port

SECRET = "test-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def heartbeat(node_id: str = "gpu-1", site: str = "lab", **changes: Any) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "url": f"ws://{node_id}.example:8001/ws",
        "name": node_id,
        "site": site,
        "provider": "CUDAExecutionProvider",
        "device": "cuda:0",
        "model": "nanodet-g-416",
        "model_sha256": "ab" * 32,
        "streams": 0,
        "max_streams": 32,
        "queue_depth": 0,
        "inference_ms": 4.0,
        **changes,
    }


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> Iterator[TestClient]:
    settings = WebappSettings(
        node_urls=("ws://static.example:8001/ws",),
        registry_secret=SECRET,
        metrics_token="scrape-token",
    )
    with TestClient(create_app(settings, registry_store=MemoryStore(clock))) as c:
        yield c


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_metrics_need_the_token_when_one_is_set(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_registry_size_by_site_and_state_and_heartbeat_answers(client: TestClient) -> None:
    assert (
        client.post("/api/nodes/register", json=heartbeat("gpu-1"), headers=AUTH).status_code == 201
    )
    assert (
        client.post("/api/nodes/register", json=heartbeat("gpu-1"), headers=AUTH).status_code == 200
    )
    client.post("/api/nodes/register", json=heartbeat("gpu-2", site="hall"), headers=AUTH)
    client.post("/api/nodes/register", json=heartbeat("gpu-3"), headers={"Authorization": "x"})
    client.post("/api/nodes/register", json=heartbeat("gpu-4", url="http://x"), headers=AUTH)
    client.get("/api/nodes")

    got = scrape(client)

    assert got[("edgesight_registry_nodes", (("site", "lab"), ("state", "live")))] == 1
    assert got[("edgesight_registry_nodes", (("site", "hall"), ("state", "live")))] == 1
    assert got[("edgesight_registry_nodes", (("site", ""), ("state", "static")))] == 1
    hb = "edgesight_registry_heartbeats_total"
    assert got[(hb, (("result", "registered"),))] == 2
    assert got[(hb, (("result", "refreshed"),))] == 1
    assert got[(hb, (("result", "unauthorized"),))] == 1
    assert got[(hb, (("result", "invalid"),))] == 1
    assert got[("edgesight_registry_list_seconds_count", ())] == 1
    assert got[("edgesight_registry_store_up", ())] == 1


def test_expired_nodes_are_counted_and_deregistered_ones_are_not(
    client: TestClient, clock: Clock
) -> None:
    client.post("/api/nodes/register", json=heartbeat("gpu-1"), headers=AUTH)
    client.post("/api/nodes/register", json=heartbeat("gpu-2"), headers=AUTH)
    scrape(client)
    assert client.delete("/api/nodes/gpu-2", headers=AUTH).status_code == 204
    clock.now_s += 60  # gpu-1 misses its heartbeats

    got = scrape(client)

    assert got[("edgesight_registry_expired_nodes_total", ())] == 1
    assert got[("edgesight_registry_nodes", (("site", ""), ("state", "live")))] == 0


def test_an_unreachable_store_is_counted_and_reads_down() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    client = TestClient(create_app(WebappSettings(registry_secret=SECRET), registry_store=store))
    assert client.get("/api/nodes").status_code == 503
    got = samples(client.get("/metrics").text)
    assert got[("edgesight_registry_store_up", ())] == 0
    assert got[("edgesight_registry_store_errors_total", ())] == 2  # the listing + the scrape


def report(**changes: Any) -> dict[str, Any]:
    return {
        "mode": "node",
        "node_url": "ws://gpu-1.example:8001/ws",
        "fps": 29.5,
        "latency_p50_ms": 48.0,
        "latency_p95_ms": 61.0,
        "frames": 290,
        "dropped": 3,
        **changes,
    }


def test_a_pages_report_becomes_metrics_labelled_by_the_registrys_node_id(
    client: TestClient,
) -> None:
    client.post("/api/nodes/register", json=heartbeat("gpu-1"), headers=AUTH)
    scrape(client)  # the registry's node ids are learnt at scrapes
    assert client.post("/api/report", json=report()).status_code == 204
    assert (
        client.post("/api/report", json=report(node_url="ws://evil/" + "x" * 99)).status_code == 204
    )

    got = scrape(client)

    assert got[("edgesight_client_frames_total", (("mode", "node"), ("node", "gpu-1")))] == 290
    assert (
        got[("edgesight_client_frames_dropped_total", (("mode", "node"), ("node", "gpu-1")))] == 3
    )
    assert got[("edgesight_client_frames_total", (("mode", "node"), ("node", "other")))] == 290
    p95 = (("mode", "node"), ("percentile", "p95"))
    assert got[("edgesight_client_grab_to_drawn_seconds_sum", p95)] == pytest.approx(0.122)
    assert got[("edgesight_client_fps_count", (("mode", "node"),))] == 2
    assert got[("edgesight_client_reports_total", (("result", "accepted"),))] == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mode": "gpu"}, "mode"),
        ({"fps": -1}, "fps"),
        ({"fps": "fast"}, "fps"),
        ({"latency_p95_ms": 1e9}, "latency_p95_ms"),
        ({"frames": True}, "frames"),
        ({"dropped": 10**9}, "dropped"),
        ({"node_url": 5}, "node_url"),
    ],
)
def test_bad_reports_are_422_naming_the_field(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    response = client.post("/api/report", json=report(**changes))
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field)


def test_oversized_and_non_json_reports_are_refused(client: TestClient) -> None:
    too_big = b'{"mode": "node", "pad": "' + b"x" * MAX_REPORT_BYTES + b'"}'
    assert client.post("/api/report", content=too_big).status_code == 413
    assert client.post("/api/report", content=b"\xff\xfe").status_code == 422
    got = scrape(client)
    assert got[("edgesight_client_reports_total", (("result", "too_large"),))] == 1
    assert got[("edgesight_client_reports_total", (("result", "invalid"),))] == 1


def test_reports_are_rate_limited_per_client() -> None:
    clock = Clock()
    limiter = ReportLimiter(clock)
    assert all(limiter.allow("10.0.0.1") for _ in range(5))  # the burst
    assert not limiter.allow("10.0.0.1")
    assert limiter.allow("10.0.0.2")  # another page is not held back
    clock.now_s += 2.0
    assert limiter.allow("10.0.0.1")
    assert not limiter.allow("10.0.0.1")


def test_a_flood_of_reports_gets_429(client: TestClient) -> None:
    answers = [client.post("/api/report", json=report()).status_code for _ in range(8)]
    assert answers[:5] == [204] * 5
    assert 429 in answers[5:]


def test_parse_report_keeps_only_known_fields() -> None:
    checked = parse_report(report(extra="ignored"))
    assert set(checked) == {
        "mode", "node_url", "fps", "latency_p50_ms", "latency_p95_ms", "frames", "dropped",
    }  # fmt: skip


def test_many_sites_are_capped_in_labels() -> None:
    metrics = WebappMetrics(NodeRegistry(MemoryStore()))
    nodes = [
        {"id": f"n{i}", "url": f"ws://n{i}/ws", "site": f"site-{i}", "static": False}
        for i in range(80)
    ]
    metrics.observe_listing(nodes)
    got = samples(metrics.render().decode())
    sites = {dict(k[1])["site"] for k in got if k[0] == "edgesight_registry_nodes"}
    assert len(sites) <= 52
    assert "other" in sites


def test_the_pages_own_report_is_what_the_route_accepts() -> None:
    from pyodide_client.dashboard import Dashboard

    board = Dashboard()
    board.drawn_frame(now_ms=100.0, capture_ms=60.0, draw_ms=1.0)
    for mode, url in (("node", "ws://gpu-1.example:8001/ws"), ("local", None), ("none", None)):
        checked = parse_report(board.report(200.0, mode, url))
        assert checked["mode"] == mode


def test_a_departed_nodes_series_leave_the_scrape(clock: Clock) -> None:
    """Issue 17: every node id that came and went left its labelled series behind (736
    lines grew to 2,884 after 1,000 ids). Given 40 nodes that pages reported about, when
    half deregister and half expire, then the scrape is back to its size before them."""
    registry = NodeRegistry(MemoryStore(clock), heartbeat_interval_s=2.0, missed_heartbeats=3)
    metrics = WebappMetrics(registry)

    def page_reports(node_id: str, mode: str) -> None:  # what POST /api/report does
        node = metrics.node_labels[f"ws://{node_id}.example:8001/ws"]
        metrics.client_frames.labels(mode, node).inc(290)
        metrics.client_dropped.labels(mode, node).inc(3)

    def scraped() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        asyncio.run(metrics.refresh())
        return set(samples(metrics.render().decode()))

    keep = NodeEntry.parse(heartbeat("gpu-keep"))
    asyncio.run(registry.heartbeat(keep))
    scraped()
    page_reports("gpu-keep", "node")
    baseline = scraped()
    ids = [f"gpu-{n}" for n in range(40)]
    for node_id in ids:
        asyncio.run(registry.heartbeat(NodeEntry.parse(heartbeat(node_id))))
    scraped()  # the ids are learnt at scrapes
    for node_id in ids:
        page_reports(node_id, "node")
        page_reports(node_id, "local")
    # 2 counters x 2 modes x (_total, _created)
    assert sum(1 for _, labels in scraped() if ("node", "gpu-7") in labels) == 8

    for node_id in ids[:20]:
        assert asyncio.run(registry.deregister(node_id))
    clock.now_s += 5  # within gpu-keep's expiry (6 s): refresh it, let the others lapse
    asyncio.run(registry.heartbeat(keep))
    clock.now_s += 4
    after = scraped()

    assert {labels for _, labels in after if any(v in ids for _, v in labels)} == set()
    assert after == baseline
