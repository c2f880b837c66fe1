"""The node's Prometheus metrics (issue 12): one ``CollectorRegistry`` per app instance, so
that two nodes in one process (tests) never share a counter.

The node calls a few hooks at clear points (the endpoint for streams, frames received and
refused; the delivery of each frame's outcome; the batcher for each batch), and ``/metrics``
renders the registry in the Prometheus text format. Times are in seconds, as Prometheus
names them; the stage buckets resolve 1-100 ms. GPU figures come from NVML
(``nvidia-ml-py``) when it is installed and finds the node's device; a CPU node simply has
none of them.

Metric names are a contract with ``deploy/prometheus/alerts.yml`` and
``deploy/grafana/edgesight.json``; tests/deploy checks that each one they use exists.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pyodide_client.protocol import Dropped, DropReason, Error, ErrorCode, Result

from .sla import LatencyWindow

__all__ = ["CONTENT_TYPE_LATEST", "STAGE_BUCKETS_S", "NodeMetrics", "is_authorised"]

log = logging.getLogger(__name__)

# 1 ms to 100 ms in steps a 30 ms objective can be read against, then a tail for stalls.
STAGE_BUCKETS_S = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04,
    0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)
STAGES = ("queue", "decode", "inference", "post", "node")


def is_authorised(authorization: str, token: str) -> bool:
    """True when no token is configured, or the header is ``Bearer <token>``."""
    if not token:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class NodeMetrics:
    """Every metric a node exports, and the hooks that move them."""

    def __init__(
        self,
        *,
        node: str,
        model: str,
        model_sha256: str,
        provider: str,
        device: str,
        in_flight: Callable[[], float] = lambda: 0.0,
        latency: LatencyWindow | None = None,
        gpu_index: int | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = latency
        Info("edgesight_node", "The node, its model and where it runs.", registry=r).info(
            {
                "node": node,
                "model": model,
                "model_sha256": model_sha256,
                "provider": provider,
                "device": device,
            }
        )
        self.frames_received = Counter(
            "edgesight_node_frames_received", "FRAME messages received.", registry=r
        )
        self.frames_answered = Counter(
            "edgesight_node_frames_answered", "Frames answered with a RESULT.", registry=r
        )
        self.frames_dropped = Counter(
            "edgesight_node_frames_dropped", "Frames answered DROPPED.", ["reason"], registry=r
        )
        self.frames_refused = Counter(
            "edgesight_node_messages_refused",
            "Messages answered with an ERROR, by error code.",
            ["code"],
            registry=r,
        )
        self.streams_open = Gauge(
            "edgesight_node_streams_open", "Open inference streams.", registry=r
        )
        self.streams_opened = Counter(
            "edgesight_node_streams_opened", "Inference streams accepted.", registry=r
        )
        self.streams_refused = Counter(
            "edgesight_node_streams_refused",
            "Connections refused before streaming, by error code.",
            ["code"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "edgesight_node_stage_seconds",
            "Time each frame spends in each node stage (node = queue + inference + post).",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "edgesight_node_batch_size", "Frames per inference batch.", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        Gauge(
            "edgesight_node_frames_in_flight", "Frames queued or running now.", registry=r
        ).set_function(in_flight)
        # Pre-create the usual label values so that rates exist (at 0) before the first event.
        for reason in DropReason:
            self.frames_dropped.labels(reason.name.lower())
        for code in (ErrorCode.MALFORMED, ErrorCode.WRONG_SHAPE, ErrorCode.INFERENCE_FAILED):
            self.frames_refused.labels(_code_name(code))
        self.streams_refused.labels(_code_name(ErrorCode.OVERLOADED))
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        self._stage = {stage: self.stage_seconds.labels(stage) for stage in STAGES}
        if latency is not None:
            r.register(_SlaCollector(latency))
        ProcessCollector(registry=r)
        if gpu_index is not None:
            gpu = NvmlCollector.open(gpu_index)
            if gpu is not None:
                r.register(gpu)

    # -- hooks ---------------------------------------------------------------------------
    def stream_opened(self) -> None:
        self.streams_opened.inc()
        self.streams_open.inc()

    def stream_closed(self) -> None:
        self.streams_open.dec()

    def stream_refused(self, code: int) -> None:
        self.streams_refused.labels(_code_name(code)).inc()

    def frame_received(self) -> None:
        self.frames_received.inc()

    def refused(self, code: int) -> None:
        self.frames_refused.labels(_code_name(code)).inc()

    def batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def outcome(self, outcome: Result | Dropped | Error) -> None:
        """A frame's one outcome, as it is sent back."""
        if isinstance(outcome, Result):
            self.frames_answered.inc()
            self._stage["queue"].observe(outcome.queue_ms / 1000.0)
            self._stage["inference"].observe(outcome.inference_ms / 1000.0)
            self._stage["post"].observe(outcome.post_ms / 1000.0)
            node_ms = outcome.queue_ms + outcome.inference_ms + outcome.post_ms
            if outcome.decode_ms is not None:  # a compressed frame (IMAGE)
                self._stage["decode"].observe(outcome.decode_ms / 1000.0)
            self._stage["node"].observe(node_ms / 1000.0)
            if self.latency is not None:
                self.latency.add(node_ms)
        elif isinstance(outcome, Dropped):
            reason = outcome.reason
            name = reason.name.lower() if isinstance(reason, DropReason) else str(reason)
            self.frames_dropped.labels(name).inc()
        else:
            self.refused(outcome.code)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return str(int(code))  # codes are a small closed set: cardinality stays bounded


class _SlaCollector(Collector):
    """The recent node-time p95 and the objective it is held to (issue 12, SLAs)."""

    def __init__(self, latency: LatencyWindow) -> None:
        self._latency = latency

    def collect(self) -> Iterable[Any]:
        objective = GaugeMetricFamily(
            "edgesight_node_sla_objective_seconds", "The node-time p95 objective."
        )
        objective.add_metric([], self._latency.objective_ms / 1000.0)
        yield objective
        p95_ms = self._latency.p95_ms()
        if p95_ms is not None:  # no frames in the window: no figure, rather than a 0
            recent = GaugeMetricFamily(
                "edgesight_node_recent_p95_seconds",
                "Node time p95 over the SLA window (absent when no frame came).",
            )
            recent.add_metric([], p95_ms / 1000.0)
            yield recent


class NvmlCollector(Collector):
    """GPU utilisation, memory, temperature and power through NVML, read at scrape time."""

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self._nvml = nvml
        self._handle = handle
        self._labels = [str(index)]

    @classmethod
    def open(cls, index: int) -> NvmlCollector | None:
        """None on a machine without nvidia-ml-py, a driver or that device: a CPU node
        exports no GPU metrics and logs nothing alarming."""
        try:
            import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # noqa: BLE001 - ImportError or any NVMLError: no GPU metrics
            log.debug("no NVML GPU metrics: %s", exc)
            return None
        return cls(pynvml, handle, index)

    def collect(self) -> Iterable[Any]:
        nvml, handle = self._nvml, self._handle
        readings: list[tuple[str, str, Callable[[], float]]] = [
            (
                "edgesight_gpu_utilization_ratio",
                "GPU busy fraction over NVML's last sample period.",
                lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,
            ),
            (
                "edgesight_gpu_memory_used_bytes",
                "GPU memory in use.",
                lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).used),
            ),
            (
                "edgesight_gpu_memory_total_bytes",
                "GPU memory in all.",
                lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).total),
            ),
            (
                "edgesight_gpu_temperature_celsius",
                "GPU temperature.",
                lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            ),
            (
                "edgesight_gpu_power_watts",
                "GPU power draw.",
                lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            ),
        ]
        for name, documentation, read in readings:
            try:
                value = read()
            except Exception:  # noqa: BLE001 - a reading this GPU does not support is left out
                continue
            family = GaugeMetricFamily(name, documentation, labels=["gpu"])
            family.add_metric(self._labels, value)
            yield family
