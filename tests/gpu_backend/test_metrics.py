"""The node's /metrics: the hooks move the right series, a real node's scrape shows a
stream's frames, and the bearer token guards the route."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from edgesight.serving import ServerThread
from gpu_backend.app import create_app
from gpu_backend.metrics import NodeMetrics, is_authorised
from gpu_backend.settings import NodeSettings
from gpu_backend.sla import LatencyWindow
from pyodide_client.protocol import Dropped, DropReason, Error, ErrorCode, Result, parse
from pyodide_client.stream import Detections, NodeStream
from tests.handshake import handshake
from tests.media import rgba_photo


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _metrics(**changes: object) -> NodeMetrics:
    values: dict[str, object] = {
        "node": "n1",
        "model": "m",
        "model_sha256": "ab" * 32,
        "provider": "CPUExecutionProvider",
        "device": "cpu",
    }
    values.update(changes)
    return NodeMetrics(**values)  # type: ignore[arg-type]


def test_outcomes_move_answered_dropped_refused_and_the_stage_histograms() -> None:
    now = [0.0]
    latency = LatencyWindow(objective_ms=30.0, window_s=10.0, clock=lambda: now[0])
    m = _metrics(latency=latency, in_flight=lambda: 3)
    m.frame_received()
    m.frame_received()
    m.outcome(Result(1, 0.0, 2.0, 10.0, 1.0, 2, ()))
    m.outcome(Result(4, 0.0, 2.0, 10.0, 1.0, 2, (), decode_ms=0.8))
    m.outcome(Dropped(2, DropReason.SUPERSEDED))
    m.outcome(Error(ErrorCode.INFERENCE_FAILED, "x", 3))
    m.refused(ErrorCode.WRONG_SHAPE)
    m.batch(2)
    m.stream_opened()
    m.stream_refused(ErrorCode.OVERLOADED)

    got = samples(m.render().decode())

    assert got[("edgesight_node_frames_received_total", ())] == 2
    assert got[("edgesight_node_frames_answered_total", ())] == 2
    assert got[("edgesight_node_stage_seconds_count", (("stage", "decode"),))] == 1
    assert got[("edgesight_node_frames_dropped_total", (("reason", "superseded"),))] == 1
    assert got[("edgesight_node_frames_dropped_total", (("reason", "shutting_down"),))] == 0
    refused = "edgesight_node_messages_refused_total"
    assert got[(refused, (("code", "inference_failed"),))] == 1
    assert got[(refused, (("code", "wrong_shape"),))] == 1
    assert got[("edgesight_node_streams_refused_total", (("code", "overloaded"),))] == 1
    assert got[("edgesight_node_streams_open", ())] == 1
    assert got[("edgesight_node_frames_in_flight", ())] == 3
    assert got[("edgesight_node_batch_size_count", ())] == 1
    # node time 13 ms: in the 15 ms bucket, not in the 12.5 ms one
    node = (("stage", "node"),)
    assert got[("edgesight_node_stage_seconds_bucket", (("le", "0.0125"), *node))] == 0
    assert got[("edgesight_node_stage_seconds_bucket", (("le", "0.015"), *node))] == 2
    assert got[("edgesight_node_stage_seconds_sum", node)] == pytest.approx(0.026)
    assert got[("edgesight_node_recent_p95_seconds", ())] == pytest.approx(0.013)
    assert got[("edgesight_node_sla_objective_seconds", ())] == pytest.approx(0.030)
    info = [k for k in got if k[0] == "edgesight_node_info"]
    assert dict(info[0][1])["provider"] == "CPUExecutionProvider"
    assert ("process_resident_memory_bytes", ()) in got


def test_unknown_error_codes_are_labelled_by_number() -> None:
    m = _metrics()
    m.refused(4242)
    assert (
        samples(m.render().decode())[("edgesight_node_messages_refused_total", (("code", "4242"),))]
        == 1
    )


def test_the_latency_window_forgets_old_frames_and_has_no_p95_when_empty() -> None:
    now = [0.0]
    window = LatencyWindow(objective_ms=30.0, window_s=5.0, clock=lambda: now[0])
    assert window.p95_ms() is None
    for ms in range(1, 101):  # 1..100 ms
        window.add(float(ms))
    assert window.p95_ms() == 95.0
    now[0] = 5.1
    assert window.p95_ms() is None


def test_no_gpu_metrics_and_no_error_where_nvml_finds_no_device() -> None:
    m = _metrics(gpu_index=99)  # no machine here has a 100th GPU
    assert "edgesight_gpu_" not in m.render().decode()


class _FakeNvml:
    NVML_TEMPERATURE_GPU = 0

    class _Memory:
        used, total = 2_000_000_000, 16_000_000_000

    class _Rates:
        gpu = 87

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> _Rates:
        return self._Rates()

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> _Memory:
        return self._Memory()

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        raise RuntimeError("not supported on this board")  # left out, not fatal


def test_gpu_metrics_come_from_nvml_when_it_has_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    got = samples(_metrics(gpu_index=1).render().decode())
    gpu = (("gpu", "1"),)
    assert got[("edgesight_gpu_utilization_ratio", gpu)] == pytest.approx(0.87)
    assert got[("edgesight_gpu_memory_used_bytes", gpu)] == 2e9
    assert got[("edgesight_gpu_memory_total_bytes", gpu)] == 16e9
    assert got[("edgesight_gpu_temperature_celsius", gpu)] == 61
    assert ("edgesight_gpu_power_watts", gpu) not in got


def test_bearer_check() -> None:
    assert is_authorised("", "")
    assert is_authorised("Bearer s3cret", "s3cret")
    assert is_authorised("bearer s3cret", "s3cret")
    assert not is_authorised("", "s3cret")
    assert not is_authorised("Bearer wrong", "s3cret")
    assert not is_authorised("Basic s3cret", "s3cret")


def _get(url: str, token: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_real_nodes_scrape_counts_a_streams_frames(node_settings: NodeSettings) -> None:
    settings = replace(node_settings, metrics_token="metrics-token-1")
    with ServerThread(create_app(settings)) as server:
        assert _get(f"{server.http_url}/metrics")[0] == 401
        with connect(server.ws_url, compression=None, max_size=None, open_timeout=10) as conn:
            stream = NodeStream()
            handshake(conn, stream)
            rgba, w, h = rgba_photo("chelsea")
            for i in range(3):
                conn.send(stream.encode_frame(rgba, w, h, capture_ms=float(i), now_ms=float(i)))
                events = stream.receive(conn.recv(timeout=30), now_ms=float(i))
                assert isinstance(events[0], Detections)
            conn.send(b"ES\x01\x63")  # an unknown message type: refused
            assert parse(conn.recv(timeout=10)).code == ErrorCode.MALFORMED  # type: ignore[union-attr]
            status, text = _get(f"{server.http_url}/metrics", "metrics-token-1")
    assert status == 200
    got = samples(text)
    assert got[("edgesight_node_frames_received_total", ())] == 3
    assert got[("edgesight_node_frames_answered_total", ())] == 3
    assert got[("edgesight_node_stage_seconds_count", (("stage", "inference"),))] == 3
    assert got[("edgesight_node_messages_refused_total", (("code", "malformed"),))] == 1
    assert got[("edgesight_node_streams_opened_total", ())] == 1
