"""The registry's latency-objective judge: degraded after a window of breaches, recovered
after a window held; and the listing carries the verdict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from webapp.app import create_app
from webapp.registry_store import MemoryStore
from webapp.settings import SettingsError, WebappSettings
from webapp.sla import SlaJudge

SECRET = "test-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_node_is_degraded_only_after_breaching_for_a_whole_window() -> None:
    clock = Clock()
    judge = SlaJudge(window_s=10.0, clock=clock)
    assert not judge.observe("gpu-1", recent_p95_ms=45.0, objective_ms=30.0)
    clock.now_s += 9.9
    assert not judge.observe("gpu-1", 45.0, 30.0)
    clock.now_s += 0.1
    assert judge.observe("gpu-1", 45.0, 30.0)
    assert judge.is_degraded("gpu-1")
    assert not judge.is_degraded("gpu-2")


def test_one_good_heartbeat_restarts_the_breach_window() -> None:
    clock = Clock()
    judge = SlaJudge(window_s=10.0, clock=clock)
    judge.observe("gpu-1", 45.0, 30.0)
    clock.now_s += 6
    judge.observe("gpu-1", 20.0, 30.0)
    clock.now_s += 6
    assert not judge.observe("gpu-1", 45.0, 30.0)  # breaching for 0 s again


def test_a_degraded_node_recovers_after_holding_for_a_window() -> None:
    clock = Clock()
    judge = SlaJudge(window_s=10.0, clock=clock)
    judge.observe("gpu-1", 45.0, 30.0)
    clock.now_s += 10
    assert judge.observe("gpu-1", 45.0, 30.0)
    clock.now_s += 1
    assert judge.observe("gpu-1", 30.0, 30.0)  # at the objective holds it; not yet a window
    clock.now_s += 9.5
    assert judge.observe("gpu-1", 0.0, 30.0)  # idle: holds
    clock.now_s += 0.5
    assert not judge.observe("gpu-1", 12.0, 30.0)


def test_no_objective_never_degrades_and_forgetting_clears_the_verdict() -> None:
    clock = Clock()
    judge = SlaJudge(window_s=1.0, clock=clock)
    judge.observe("old-node", 500.0, 0.0)
    clock.now_s += 5
    assert not judge.observe("old-node", 500.0, 0.0)
    judge.observe("gpu-1", 45.0, 30.0)
    clock.now_s += 1
    assert judge.observe("gpu-1", 45.0, 30.0)
    judge.forget("gpu-1")
    assert not judge.is_degraded("gpu-1")


def heartbeat(node_id: str, p95_ms: float, **changes: Any) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "url": f"ws://{node_id}.example:8001/ws",
        "name": node_id,
        "provider": "CUDAExecutionProvider",
        "device": "cuda:0",
        "model": "nanodet-g-416",
        "model_sha256": "ab" * 32,
        "streams": 0,
        "max_streams": 32,
        "queue_depth": 0,
        "inference_ms": 4.0,
        "recent_p95_ms": p95_ms,
        "sla_p95_ms": 30.0,
        **changes,
    }


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = WebappSettings(node_urls=(), registry_secret=SECRET, sla_window_s=0.001)
    with TestClient(create_app(settings, registry_store=MemoryStore())) as c:
        yield c


def test_the_listing_marks_degraded_nodes_and_lists_them_last(client: TestClient) -> None:
    for _ in range(2):  # the second breach is a window after the first
        client.post("/api/nodes/register", json=heartbeat("a-slow", 80.0), headers=AUTH)
        client.post("/api/nodes/register", json=heartbeat("b-fast", 9.0), headers=AUTH)
    nodes = client.get("/api/nodes").json()["nodes"]
    assert [(n["id"], n["degraded"]) for n in nodes] == [("b-fast", False), ("a-slow", True)]
    assert nodes[1]["recent_p95_ms"] == 80.0
    metrics = client.get("/metrics").text
    assert 'edgesight_registry_nodes{site="",state="degraded"} 1.0' in metrics


def test_bad_objective_figures_are_refused(client: TestClient) -> None:
    response = client.post("/api/nodes/register", json=heartbeat("gpu-1", -1.0), headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "recent_p95_ms"


def test_the_window_comes_from_the_environment() -> None:
    assert WebappSettings.from_env({"EDGESIGHT_SLA_WINDOW_S": "12.5"}).sla_window_s == 12.5
    with pytest.raises(SettingsError, match="EDGESIGHT_SLA_WINDOW_S"):
        WebappSettings.from_env({"EDGESIGHT_SLA_WINDOW_S": "0"})
