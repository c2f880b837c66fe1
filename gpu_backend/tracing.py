"""The node's spans for sampled frames (issue 12), exported with the OpenTelemetry SDK over
OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``. Without that setting there is no tracer at
all: the node does not announce TRACE in its WELCOME, and a frame costs nothing more.

A page samples a frame (1 in 100 by default) and sends a TRACE message naming it right
before the frame. When that frame's outcome is sent, the node records, as children of the
page's span, in the page's trace:

    node            received -> outcome sent, with the node, model and device as attributes
    ├── decode      compressed (IMAGE) frames only
    ├── queue       waiting for a batch
    └── batch       the batch that ran the frame (batch size; linked to every sampled
        │           frame's node span in the same batch)
        ├── inference
        └── post    post-processing of this frame

The durations are the ones the RESULT reports; spans are built with explicit ids and times
(``ReadableSpan``) so that their parent is exactly the page's span id from the TRACE.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags

from pyodide_client.protocol import Dropped, Error, Result, Trace

__all__ = ["NodeTracer"]

log = logging.getLogger(__name__)

MAX_PENDING = 1024  # sampled frames awaiting their outcome; a client cannot grow it past
SCOPE = InstrumentationScope("edgesight.node")


@dataclass
class _Pending:
    trace: Trace
    received_ns: int


class NodeTracer:
    def __init__(
        self,
        exporter: SpanExporter,
        attributes: Mapping[str, str],
        schedule_delay_ms: float = 1000.0,
    ) -> None:
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
        self._resource = Resource.create({"service.name": "edgesight-node", **attributes})
        self._attributes = dict(attributes)
        self._pending: OrderedDict[tuple[int, int], _Pending] = OrderedDict()
        self._random = random.SystemRandom()

    @classmethod
    def for_endpoint(cls, endpoint: str, attributes: Mapping[str, str]) -> NodeTracer:
        """OTLP/HTTP to ``endpoint`` (the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT
        is): spans go to ``{endpoint}/v1/traces``."""
        return cls(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"), attributes)

    def expect(self, stream: int, trace: Trace) -> None:
        """A TRACE arrived: the frame it names follows."""
        if not trace.trace_flags & 1:
            return  # not sampled: nothing is recorded
        self._pending[(stream, trace.frame_id)] = _Pending(trace, time.time_ns())
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)

    def forget(self, stream: int) -> None:
        for key in [k for k in self._pending if k[0] == stream]:
            del self._pending[key]

    def finished_batch(self, outcomes: Sequence[tuple[int, Result | Dropped | Error]]) -> None:
        """One batch's outcomes (stream, outcome), as they are sent: the sampled frames'
        spans, their batch spans linked to each other's frames."""
        if not self._pending:
            return
        now_ns = time.time_ns()
        sampled = []
        for stream, outcome in outcomes:
            pending = self._pending.pop((stream, outcome.frame_id or 0), None)
            if pending is not None:
                sampled.append((pending, outcome, self._new_id()))
        for pending, outcome, span_id in sampled:
            links = [
                Link(
                    self._context(other.trace.trace_id, other_id),
                    {"frame.id": other.trace.frame_id},
                )
                for other, _, other_id in sampled
                if other_id != span_id
            ]
            self._record(pending, outcome, now_ns, node_span_id=span_id, links=links)

    def shutdown(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]  # flushes what is queued

    # -- spans ---------------------------------------------------------------------------------
    def _record(
        self,
        pending: _Pending,
        outcome: Result | Dropped | Error,
        end_ns: int,
        node_span_id: int | None = None,
        links: Sequence[Link] = (),
    ) -> None:
        trace = pending.trace
        trace_id = int.from_bytes(trace.trace_id, "big")
        node_id = node_span_id if node_span_id is not None else self._new_id()
        page_parent = self._context(trace.trace_id, int.from_bytes(trace.span_id, "big"))
        node_context = self._context(trace.trace_id, node_id)
        attributes: dict[str, str | int | float] = {**self._attributes, "frame.id": trace.frame_id}
        if isinstance(outcome, Result):
            attributes["batch.size"] = outcome.batch_size
            attributes["detections"] = len(outcome.detections)
        else:
            attributes["outcome"] = type(outcome).__name__.lower()
        self._emit("node", node_context, page_parent, pending.received_ns, end_ns, attributes,
                   kind=SpanKind.SERVER)  # fmt: skip
        if not isinstance(outcome, Result):
            return
        t = pending.received_ns
        ms = 1_000_000
        if outcome.decode_ms is not None:
            decode_end = t + int(outcome.decode_ms * ms)
            self._emit("decode", self._child(trace_id), node_context, t, decode_end)
            t = decode_end
        queue_end = t + int(outcome.queue_ms * ms)
        self._emit("queue", self._child(trace_id), node_context, t, queue_end)
        inference_end = queue_end + int(outcome.inference_ms * ms)
        post_end = inference_end + int(outcome.post_ms * ms)
        batch = self._child(trace_id)
        self._emit("batch", batch, node_context, queue_end, post_end,
                   {"batch.size": outcome.batch_size}, links=links)  # fmt: skip
        self._emit("inference", self._child(trace_id), batch, queue_end, inference_end,
                   {"device": self._attributes.get("device", "")})  # fmt: skip
        self._emit("post", self._child(trace_id), batch, inference_end, post_end)

    def _emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, str | int | float] | None = None,
        links: Sequence[Link] = (),
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        self._processor.on_end(
            finished_span(
                name, context, parent, self._resource, SCOPE, start_ns, end_ns,
                attributes, links, kind,
            )
        )  # fmt: skip

    def _new_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def _child(self, trace_id: int) -> SpanContext:
        return SpanContext(trace_id, self._new_id(), False, TraceFlags(TraceFlags.SAMPLED))

    @staticmethod
    def _context(trace_id: bytes | int, span_id: int) -> SpanContext:
        tid = trace_id if isinstance(trace_id, int) else int.from_bytes(trace_id, "big")
        return SpanContext(tid, span_id, False, TraceFlags(TraceFlags.SAMPLED))


def finished_span(
    name: str,
    context: SpanContext,
    parent: SpanContext | None,
    resource: Resource,
    scope: InstrumentationScope,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, str | int | float] | None = None,
    links: Sequence[Link] = (),
    kind: SpanKind = SpanKind.INTERNAL,
) -> ReadableSpan:
    """A span recorded after the fact (its times come from RESULT timings or a page's
    report), as the node and the web app both export them."""
    return ReadableSpan(
        name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes or {},
        links=links,
        kind=kind,
        start_time=start_ns,
        end_time=max(start_ns, end_ns),
        instrumentation_scope=scope,
    )
