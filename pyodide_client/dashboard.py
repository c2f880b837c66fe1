"""The numbers a page shows: frames drawn per second, round trips, per-stage timings
(p50/p95 over the last seconds) for the stats panel, and what the frames cost on the wire
(encoding, bytes per frame, Mbit/s; issue 9)."""

from __future__ import annotations

from .stats import RollingWindow

__all__ = ["STAGES", "Dashboard"]

STAGES = (
    "preprocess",
    "network",
    "decode",
    "queue",
    "inference",
    "post",
    "draw",
    "grab_to_drawn",
)


class Dashboard:
    def __init__(self, span_ms: float = 3000.0) -> None:
        self.span_ms = span_ms
        self.drawn = RollingWindow(span_ms)
        self.round_trip = RollingWindow(span_ms)
        self.stages = {name: RollingWindow(span_ms) for name in STAGES}
        self.frame_bytes = RollingWindow(span_ms)  # per frame sent to a node
        # the same, by encoding (at most the protocol's few names): a frame's size is told
        # for the encoding frames go in now, not a mean over raw and JPEG frames
        self._frame_bytes_by_encoding: dict[str, RollingWindow] = {}
        self.encoding = "raw"  # of the last frame sent
        self._drawn_since_report = 0
        self._dropped_since_report = 0

    def node_result(
        self,
        now_ms: float,
        round_trip_ms: float,
        queue_ms: float,
        inference_ms: float,
        post_ms: float,
        decode_ms: float = 0.0,
    ) -> None:
        self.round_trip.add(now_ms, round_trip_ms)
        self.stages["decode"].add(now_ms, decode_ms)
        self.stages["queue"].add(now_ms, queue_ms)
        self.stages["inference"].add(now_ms, inference_ms)
        self.stages["post"].add(now_ms, post_ms)
        node_ms = decode_ms + queue_ms + inference_ms + post_ms
        self.stages["network"].add(now_ms, max(0.0, round_trip_ms - node_ms))

    def frame_sent(self, now_ms: float, encoding: str, size_bytes: int) -> None:
        """A frame went to a node as ``encoding`` in a message of ``size_bytes``."""
        self.encoding = encoding
        self.frame_bytes.add(now_ms, float(size_bytes))
        window = self._frame_bytes_by_encoding.setdefault(encoding, RollingWindow(self.span_ms))
        window.add(now_ms, float(size_bytes))

    def wire(self, now_ms: float) -> dict[str, float | str]:
        """What frames cost on the wire lately: the encoding, the mean bytes of its frames
        and the rate sent in Mbit/s over the window (frames of every encoding). Seen in
        Firefox right after going raw: "raw, 154.6 KB a frame", a mean of JPEG and raw."""
        sent = self.frame_bytes
        current = self._frame_bytes_by_encoding.get(self.encoding)
        return {
            "encoding": self.encoding,
            "frame_bytes": round(current.mean(now_ms)) if current is not None else 0,
            "mbit_s": round(sent.total(now_ms) * 8 / 1000 / sent.span_ms, 2),
        }

    def local_result(self, now_ms: float, inference_ms: float) -> None:
        self.stages["inference"].add(now_ms, inference_ms)

    def preprocessed(self, now_ms: float, duration_ms: float) -> None:
        self.stages["preprocess"].add(now_ms, duration_ms)

    def drawn_frame(self, now_ms: float, capture_ms: float, draw_ms: float) -> None:
        self.drawn.add(now_ms, 1.0)
        self._drawn_since_report += 1
        self.stages["draw"].add(now_ms, draw_ms)
        self.stages["grab_to_drawn"].add(now_ms, now_ms - capture_ms)

    def dropped_frame(self) -> None:
        """A frame the node answered DROPPED: sent, never drawn."""
        self._dropped_since_report += 1

    def report(self, now_ms: float, mode: str, node_url: str | None) -> dict[str, object]:
        """What the page tells the web app every ~10 s (POST /api/report, issue 12): what its
        user sees. Frame counts are since the previous report."""
        g2g = self.stages["grab_to_drawn"]
        body: dict[str, object] = {
            "mode": mode,
            "node_url": node_url if mode == "node" else None,
            "fps": round(self.drawn.rate_per_s(now_ms), 1),
            "latency_p50_ms": round(g2g.percentile(now_ms, 50), 1),
            "latency_p95_ms": round(g2g.percentile(now_ms, 95), 1),
            "frames": self._drawn_since_report,
            "dropped": self._dropped_since_report,
        }
        self._drawn_since_report = 0
        self._dropped_since_report = 0
        return body

    def recent_round_trip_p95_ms(self, now_ms: float) -> float | None:
        return self.round_trip.percentile(now_ms, 95) if self.round_trip.count(now_ms) else None

    def summary(self, now_ms: float) -> dict[str, float | None]:
        """Frames drawn per second and medians; None where nothing was measured (a page
        shows "—" then, never "0.0 fps · 0 ms")."""
        grab_to_drawn = self.stages["grab_to_drawn"]
        return {
            "fps": (
                round(self.drawn.rate_per_s(now_ms), 1) if self.drawn.count(now_ms) >= 2 else None
            ),
            "round_trip_ms": _median(self.round_trip, now_ms),
            "latency_ms": _median(grab_to_drawn, now_ms),
        }

    def is_drawing(self, now_ms: float) -> bool:
        """Whether boxes were drawn in the last seconds: detection runs only while they are."""
        return self.drawn.count(now_ms) > 0

    def stage_table(self, now_ms: float) -> dict[str, dict[str, float | None]]:
        """p50 and p95 of each stage; None for a stage with no sample in the window."""
        table: dict[str, dict[str, float | None]] = {}
        for name, window in self.stages.items():
            has_data = window.count(now_ms) > 0
            table[name] = {
                "p50": round(window.percentile(now_ms, 50), 1) if has_data else None,
                "p95": round(window.percentile(now_ms, 95), 1) if has_data else None,
            }
        return table


def _median(window: RollingWindow, now_ms: float) -> float | None:
    return round(window.percentile(now_ms, 50), 1) if window.count(now_ms) else None
