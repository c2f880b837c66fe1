"""What one running node is: its settings, model, engine, batcher and counters, built and
torn down by the app's lifespan."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from pyodide_client.postprocess import PostprocessSettings
from pyodide_client.protocol import Dtype, Hello

from .batcher import Batcher
from .engine import Engine, LoadedModel
from .metrics import NodeMetrics
from .settings import NodeSettings
from .sla import LatencyWindow
from .tracing import NodeTracer

__all__ = ["Node"]


@dataclass
class Node:
    settings: NodeSettings
    model: LoadedModel
    engine: Engine
    batcher: Batcher = field(init=False)
    metrics: NodeMetrics = field(init=False)
    latency: LatencyWindow = field(init=False)
    tracer: NodeTracer | None = field(init=False, default=None)  # None: not tracing
    hello_bytes: bytes = field(init=False)
    streams_open: int = 0

    def __post_init__(self) -> None:
        card = self.model.card
        s = self.settings
        self.batcher = Batcher(
            self.engine,
            num_classes=len(card.class_names),
            postprocess=PostprocessSettings(
                score_threshold=s.score_threshold,
                iou_threshold=s.iou_threshold,
                max_detections=s.max_detections,
            ),
            max_batch_size=s.max_batch_size,
            max_batch_wait_ms=s.max_batch_wait_ms,
        )
        self.latency = LatencyWindow(s.sla_p95_ms, s.sla_window_s)
        self.metrics = NodeMetrics(
            node=s.node_name,
            model=card.name,
            model_sha256=card.sha256,
            provider=self.engine.provider,
            device=self.engine.device_name,
            in_flight=lambda: self.batcher.in_flight,
            latency=self.latency,
            gpu_index=s.device_id if self.engine.device_name.startswith("cuda") else None,
        )
        self.batcher.on_batch = self.metrics.batch
        if s.otlp_endpoint:
            self.tracer = NodeTracer.for_endpoint(
                s.otlp_endpoint,
                {
                    "node": s.node_name,
                    "model": card.name,
                    "model.sha256": card.sha256,
                    "provider": self.engine.provider,
                    "device": self.engine.device_name,
                },
            )
            self.batcher.on_batch_done = self.tracer.finished_batch
        self.hello_bytes = Hello(
            node_name=s.node_name,
            model_name=card.name,
            model_sha256=card.sha256,
            dtype=Dtype.UINT8,
            frame_shape=self.frame_shape,
            class_names=card.class_names,
            max_in_flight=s.max_in_flight,
        ).serialize()

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.model.card.frame_shape

    def describe(self) -> dict[str, object]:
        """What /readyz reports: enough for a person or a registry to judge the node."""
        card = self.model.card
        return {
            "node": self.settings.node_name,
            "host": platform.node(),
            "model": card.name,
            "model_sha256": card.sha256,
            "provider": self.engine.provider,
            "device": self.engine.device_name,
            "streams": self.streams_open,
            "max_streams": self.settings.max_streams,
            "queue_depth": self.batcher.queue_depth,
            "last_inference_ms": round(self.batcher.last_inference_ms, 3),
        }
