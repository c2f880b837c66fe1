"""What one running node is: its settings, model, engine, batcher, stream slots and live
connections, built and torn down by the app's lifespan."""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from pyodide_client.postprocess import PostprocessSettings
from pyodide_client.protocol import TRACE_FEATURE, Dtype, FrameEncoding, Hello, encodings_mask

from .access import AnonymousAccess, Authenticator
from .admission import Admission
from .batcher import Batcher
from .connection import ConnectionLimits
from .connections import Connections
from .decode import Decoder
from .decode_queue import DecodeQueue
from .engine import Engine, LoadedModel
from .metrics import NodeMetrics
from .origins import OriginPolicy
from .settings import NodeSettings
from .sla import LatencyWindow
from .tracing import NodeTracer

__all__ = ["Node", "WebTransportServer"]


class WebTransportServer(Protocol):
    """What a node reads of its WebTransport server (``wt_server.WtServer``), named here so
    that the node does not import the server that imports it back (issue 19)."""

    port: int  # the UDP port; 0 until bound
    frames_abandoned: int

    @property
    def cert_sha256_hex(self) -> str | None: ...

    @property
    def protocols(self) -> Sized: ...  # the live QUIC connections

    async def stop(self) -> None: ...


@dataclass
class Node:
    settings: NodeSettings
    model: LoadedModel
    engine: Engine
    authenticator: Authenticator = field(default_factory=AnonymousAccess)
    batcher: Batcher = field(init=False)
    metrics: NodeMetrics = field(init=False)
    latency: LatencyWindow = field(init=False)
    tracer: NodeTracer | None = field(init=False, default=None)  # None: not tracing
    hello_bytes: bytes = field(init=False)
    # Compressed frames (issue 9): what WELCOME offers, and who decodes them, off the
    # event loop and beside (not behind) the inference thread, fairly between
    # connections (issue 17).
    encodings: int = field(init=False)
    decoder: Decoder = field(init=False)
    decode_pool: ThreadPoolExecutor = field(init=False)
    decode_queue: DecodeQueue = field(init=False)
    admission: Admission = field(init=False)
    limits: ConnectionLimits = field(init=False)
    origins: OriginPolicy = field(init=False)
    # Live connections (streams, probes, sockets still in their handshake): who may open
    # one, and what the node holds for clients right now, e.g. their unsent bytes.
    connections: Connections = field(init=False)
    # The WebTransport endpoint (issue 16), started by the lifespan; None when off.
    webtransport: WebTransportServer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        card = self.model.card
        s = self.settings
        self.admission = Admission(
            s.node_name,
            max_streams=s.max_streams,
            max_streams_per_identity=s.max_streams_per_identity,
            max_streams_per_address=s.max_streams_per_address,
        )
        self.limits = ConnectionLimits(
            max_in_flight=s.max_in_flight,
            handshake_timeout_s=s.handshake_timeout_s,
            idle_timeout_s=s.idle_timeout_s,
            max_refused_messages=s.max_refused_messages,
            max_outbox_bytes=s.max_outbox_bytes,
            max_messages_per_s=s.max_messages_per_s,
        )
        self.origins = s.origin_policy
        self.batcher = Batcher(
            self.engine,
            num_classes=len(card.class_names),
            postprocess=PostprocessSettings(
                score_threshold=s.score_threshold,
                iou_threshold=s.iou_threshold,
                cross_class_iou_threshold=s.cross_class_iou_threshold,
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
        self.encodings = encodings_mask(list(FrameEncoding))
        _, height, width = self.frame_shape
        self.decoder = Decoder(width, height, max_jpeg_scans=s.max_jpeg_scans)
        self.decode_pool = ThreadPoolExecutor(s.decode_threads, thread_name_prefix="decode")
        self.decode_queue = DecodeQueue(self.decoder, self.decode_pool, s.decode_threads)
        self.hello_bytes = Hello(
            node_name=s.node_name,
            model_name=card.name,
            model_sha256=card.sha256,
            dtype=Dtype.UINT8,
            frame_shape=self.frame_shape,
            class_names=card.class_names,
            max_in_flight=s.max_in_flight,
        ).serialize()
        self.connections = Connections(
            origins=self.origins,
            hello=self.hello_bytes,
            limits=self.limits,
            admission=self.admission,
            authenticator=self.authenticator,
            frame_shape=self.frame_shape,
            encodings=self.encodings,
            features=TRACE_FEATURE if self.tracer is not None else 0,
            observer=self.metrics,
            wt_offer=lambda: self.wt_offer,  # read per connection: the hash rotates
        )

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.model.card.frame_shape

    @property
    def streams_open(self) -> int:
        return self.admission.streams_open

    @property
    def outbox_bytes(self) -> int:
        """Bytes queued for clients and not yet written to their sockets."""
        return self.connections.outbox_bytes

    @property
    def peak_outbox_bytes(self) -> int:
        """The most unsent bytes one connection ever held."""
        return self.connections.peak_outbox_bytes

    @peak_outbox_bytes.setter
    def peak_outbox_bytes(self, queued_bytes: int) -> None:
        # A driver written when this was a plain field (node.peak_outbox_bytes = max(...))
        self.connections.note_outbox(queued_bytes)

    @property
    def policy_closes(self) -> Counter[str]:
        """Connections the node closed, by the policy that closed them (ErrorCode names)."""
        return self.connections.policy_closes

    def describe(self, include_private: bool = False) -> dict[str, object]:
        """What /readyz reports: enough for a person or a registry to judge the node.
        The host name only with ``include_private`` (asked from loopback or with a
        token): an outsider learns nothing about the machine behind the node."""
        card = self.model.card
        private: dict[str, object] = {"host": platform.node()} if include_private else {}
        return {
            "node": self.settings.node_name,
            **private,
            "model": card.name,
            "model_sha256": card.sha256,
            "provider": self.engine.provider,
            "device": self.engine.device_name,
            "streams": self.streams_open,
            "max_streams": self.settings.max_streams,
            "queue_depth": self.batcher.queue_depth,
            "last_inference_ms": round(self.batcher.last_inference_ms, 3),
            **self.describe_webtransport(),
        }

    @property
    def wt_offer(self) -> tuple[int, str]:
        """What WELCOME announces: the WebTransport UDP port (0: none) and the hex SHA-256
        of a self-signed certificate ("" for a CA-signed one), as of now (it rotates)."""
        wt = self.webtransport
        if wt is None:
            return (0, "")
        return (wt.port, wt.cert_sha256_hex or "")

    def describe_webtransport(self) -> dict[str, object]:
        """Where a page finds this node's WebTransport endpoint: its UDP port and, for a
        self-signed certificate, the SHA-256 a page passes as serverCertificateHashes."""
        wt = self.webtransport
        if wt is None:
            return {}
        info: dict[str, object] = {
            "wt_port": wt.port,
            "wt_sessions": len(wt.protocols),
            "wt_frames_abandoned": wt.frames_abandoned,
        }
        if wt.cert_sha256_hex is not None:
            info["wt_cert_sha256"] = wt.cert_sha256_hex
        return info
