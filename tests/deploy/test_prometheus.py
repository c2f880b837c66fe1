"""A real Prometheus scrapes a real node and web app during a short stream and sees the frame
counters and histograms move; every metric the shipped rules and dashboard use exists in a
real scrape."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection, connect

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from pyodide_client.stream import Detections, NodeStream
from tests.handshake import handshake
from tests.media import rgba_photo
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

from .conftest import DEPLOY, Prometheus, start_prometheus

SECRET = "test-secret-0123456789abcdef"
NODE_JOB, WEBAPP_JOB = "edgesight-node", "edgesight-webapp"


@pytest.fixture(scope="module")
def node(node_settings: NodeSettings) -> Iterator[ServerThread]:
    with ServerThread(create_node_app(node_settings)) as server:
        yield server


@pytest.fixture(scope="module")
def webapp(node: ServerThread) -> Iterator[ServerThread]:
    settings = WebappSettings(node_urls=(node.ws_url,), registry_secret=SECRET)
    with ServerThread(create_webapp(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(
    node: ServerThread, webapp: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    yield from start_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        {NODE_JOB: f"127.0.0.1:{node.port}", WEBAPP_JOB: f"127.0.0.1:{webapp.port}"},
    )


def until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Prometheus scrapes on its own clock: ask it again until ``condition`` holds."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()  # never set: a bounded wait between queries
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus never saw {what} within {timeout_s} s")
        pause.wait(0.2)


def stream_frames(conn: ClientConnection, stream: NodeStream, count: int) -> None:
    rgba, w, h = rgba_photo("chelsea")
    for i in range(count):
        conn.send(stream.encode_frame(rgba, w, h, capture_ms=float(i), now_ms=float(i)))
        assert isinstance(stream.receive(conn.recv(timeout=30), now_ms=float(i))[0], Detections)


def post_report(webapp: ServerThread, node_url: str, frames: int) -> None:
    body = {"mode": "node", "node_url": node_url, "fps": 12.0, "latency_p50_ms": 40.0,
            "latency_p95_ms": 55.0, "frames": frames, "dropped": 0}  # fmt: skip
    request = urllib.request.Request(
        f"{webapp.http_url}/api/report",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def test_prometheus_sees_a_streams_counters_and_histograms_move(
    prometheus: Prometheus, node: ServerThread, webapp: ServerThread
) -> None:
    answered = f'edgesight_node_frames_answered_total{{job="{NODE_JOB}"}}'
    until(lambda: prometheus.value(f'up{{job="{NODE_JOB}"}}') == 1, "the node up")
    until(lambda: prometheus.value(f'up{{job="{WEBAPP_JOB}"}}') == 1, "the web app up")
    assert prometheus.value(answered) == 0

    with connect(node.ws_url, compression=None, max_size=None, open_timeout=10) as conn:
        stream = NodeStream()
        handshake(conn, stream)
        stream_frames(conn, stream, 5)
        until(lambda: (prometheus.value(answered) or 0) >= 5, "5 frames answered")
        stream_frames(conn, stream, 5)
        until(lambda: (prometheus.value(answered) or 0) >= 10, "10 frames answered")
    post_report(webapp, node.ws_url, frames=120)

    received = prometheus.value(f'edgesight_node_frames_received_total{{job="{NODE_JOB}"}}')
    assert received == 10
    inference = f'edgesight_node_stage_seconds_count{{job="{NODE_JOB}", stage="inference"}}'
    assert prometheus.value(inference) == 10
    p95 = prometheus.value(
        "histogram_quantile(0.95, sum by (le) "
        f'(edgesight_node_stage_seconds_bucket{{job="{NODE_JOB}", stage="node"}}))'
    )
    assert p95 is not None
    assert 0 < p95 <= 1.0
    assert (prometheus.value(f"increase({answered}[1m])") or 0) > 0
    assert prometheus.value(f'edgesight_node_batch_size_count{{job="{NODE_JOB}"}}') == 10
    drawn = f'sum(edgesight_client_frames_total{{job="{WEBAPP_JOB}", mode="node"}})'
    until(lambda: prometheus.value(drawn) == 120, "the page's report")
    assert prometheus.value(f'edgesight_registry_store_up{{job="{WEBAPP_JOB}"}}') == 1


def test_the_shipped_rules_evaluate_cleanly_against_real_series(prometheus: Prometheus) -> None:
    def rules() -> list[dict[str, object]]:
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=10) as response:
            groups = json.load(response)["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def evaluated() -> bool:  # Go's zero time until a rule's first evaluation
        return all(not str(r.get("lastEvaluation", "0001")).startswith("0001") for r in rules())

    until(evaluated, "every rule evaluated")
    loaded = rules()
    assert len(loaded) == 5
    assert all(r["health"] == "ok" for r in loaded), loaded


# Names in PromQL that are functions, keywords or labels, not metrics.
_NOT_METRICS = {
    "sum", "rate", "increase", "histogram_quantile", "by", "on", "max", "min", "le", "and",
    "or", "unless", "without", "ignoring", "group_left", "group_right",
}  # fmt: skip
_SUFFIXES = ("_bucket", "_count", "_sum")


def metric_names(text: str) -> set[str]:
    """Metric names in PromQL expressions, without label matchers and durations."""
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    return {
        name
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)\b\s*(?=[^\w(]|$)", text)
        if name.startswith(("edgesight_", "process_", "up")) and name not in _NOT_METRICS
    }


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "edgesight.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    return re.findall(r"expr: \|?\s*((?:.|\n)*?)\n\s+for:", text)


def scraped_names(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def test_every_metric_in_the_dashboard_and_rules_exists_in_a_real_scrape(
    node: ServerThread, webapp: ServerThread
) -> None:
    with connect(node.ws_url, compression=None, max_size=None, open_timeout=10) as conn:
        stream = NodeStream()
        handshake(conn, stream)
        stream_frames(conn, stream, 1)  # series that appear with the first frame
    post_report(webapp, node.ws_url, frames=1)
    exposed = scraped_names(node.http_url) | scraped_names(webapp.http_url) | {"up"}
    # NVML's gauges exist only on NVIDIA nodes: check them against the collector's source.
    nvml_source = (Path(__file__).resolve().parents[2] / "gpu_backend" / "metrics.py").read_text()
    used = set()
    for expr in [*dashboard_exprs(), *rule_exprs()]:
        used |= metric_names(expr)
    assert len(used) > 20
    missing = sorted(
        name
        for name in used
        if name not in exposed
        and not (name.startswith("edgesight_gpu_") and f'"{name}"' in nvml_source)
    )
    assert not missing, f"not in any real scrape: {missing}"


def test_the_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "edgesight.json").read_text())
    assert dashboard["uid"] == "edgesight"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos"} <= set(panel)
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
