"""What the page says, in plain words: the badge, the status line, the details, the rows
of the Timings panel and the "In view" summary. Pure functions of what the page knows;
``static/status-view.js`` only puts the strings on screen.

Wording rules (issue 10): say where detection runs in words a visitor understands, with
its own colour for "in this browser"; no number before there is a measurement ("—"
instead of "0.0 fps"); URLs, thread counts and retry countdowns go to the details, not the
main line; the Timings panel lists only the stages the current mode has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .postprocess import FrameBox

__all__ = [
    "DASH",
    "STAGES_BY_MODE",
    "STAGE_LABELS",
    "TIMES",
    "Snapshot",
    "badge",
    "details",
    "in_view",
    "status_line",
    "timing_rows",
    "wire_short",
    "wire_text",
]

DASH = "—"
TIMES = "\u00d7"  # multiplication sign

STAGE_LABELS = {
    "preprocess": "prepare the frame (Python)",
    "network": "network",
    "decode": "unpack the frame (server)",
    "queue": "wait on the server",
    "inference": "detect",
    "post": "pick boxes",
    "draw": "draw",
    "grab_to_drawn": "frame grabbed → boxes drawn",
}
STAGES_BY_MODE: Mapping[str, tuple[str, ...]] = {
    "node": (
        "preprocess",
        "network",
        "decode",
        "queue",
        "inference",
        "post",
        "draw",
        "grab_to_drawn",
    ),
    "local": ("preprocess", "inference", "draw", "grab_to_drawn"),
    "none": (),
}


@dataclass(frozen=True)
class Snapshot:
    """What the page knows at one moment; ``None`` numbers are not measured yet."""

    mode: str  # "node" | "local" | "none"
    node: str | None
    node_url: str | None
    model: str
    threads: int
    local_state: str
    route: str
    fps: float | None
    latency_ms: float | None
    round_trip_ms: float | None
    # how frames travel (issue 9): {"encoding", "frame_bytes", "mbit_s", "note"}, and K
    # ("in_flight", issue 16) once a node link is ready
    wire: Mapping[str, object] | None = None


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:.{digits}f}"


def badge(s: Snapshot) -> dict[str, str]:
    """Where detection runs, for the badge over the picture: ``kind`` picks its colour."""
    if s.mode == "node":
        return {"kind": "node", "text": f"Detecting on server {s.node or ''}".strip()}
    if s.mode == "local":
        return {"kind": "local", "text": "Detecting in this browser"}
    if s.local_state == "loading":
        return {"kind": "none", "text": "Starting detection…"}
    return {"kind": "none", "text": "Not detecting"}


def status_line(s: Snapshot) -> str:
    """The one line under the picture."""
    if s.mode == "none":
        if s.local_state == "loading":
            return "Looking for a detection server; getting this browser ready meanwhile…"
        return "Looking for a detection server…"
    line = (
        f"{_number(s.fps, 1)} frames a second · boxes {_number(s.latency_ms)} ms "
        "after the frame was grabbed"
    )
    if s.mode == "node" and s.wire and s.wire.get("frame_bytes"):
        line += f" · {wire_short(s.wire)}"
    return line


def wire_short(wire: Mapping[str, object]) -> str:
    """How frames travel, for the status line (issue 9): ``jpeg, 14.2 KB a frame, 3.4 Mbit/s``."""
    kb = float(str(wire.get("frame_bytes", 0))) / 1000
    mbit_s = float(str(wire.get("mbit_s", 0.0)))
    return f"{wire.get('encoding', 'raw')}, {kb:.1f} KB a frame, {mbit_s:.1f} Mbit/s"


def details(s: Snapshot) -> list[str]:
    """Lines for the details area: the raw facts, URLs and countdowns included."""
    lines = []
    if s.mode == "node":
        lines.append(f"Server: {s.node} at {s.node_url}")
        lines.append(f"Round trip to the server: {_number(s.round_trip_ms)} ms")
        if s.wire and s.wire.get("frame_bytes"):
            lines.append(wire_text(s.wire))
    elif s.mode == "local":
        threads = f"{s.threads} thread{'' if s.threads == 1 else 's'}"
        lines.append(f"In this browser: onnxruntime-web (WebAssembly, {threads})")
    if s.node_url and s.mode != "node":
        lines.append(f"Connecting to: {s.node_url}")
    lines.append(f"Model: {s.model}")
    lines.append(f"In-browser detection: {s.local_state}")
    if s.route:
        lines.append(f"Routing: {s.route}")
    return lines


def wire_text(wire: Mapping[str, object]) -> str:
    """How frames travel: ``Frames sent as jpeg: 14.2 KB each, 3.4 Mbit/s``."""
    kb = float(str(wire.get("frame_bytes", 0))) / 1000
    mbit_s = float(str(wire.get("mbit_s", 0.0)))
    text = f"Frames sent as {wire.get('encoding', 'raw')}: {kb:.1f} KB each, {mbit_s:.1f} Mbit/s"
    if "in_flight" in wire:
        text += f", up to {wire['in_flight']} in flight"
    note = wire.get("note")
    return f"{text} ({note})" if note else text


def timing_rows(mode: str, table: Mapping[str, Mapping[str, float | None]]) -> list[dict[str, str]]:
    """The Timings panel: only the stages of ``mode``, "—" where nothing was measured."""
    rows = []
    for name in STAGES_BY_MODE.get(mode, ()):
        values = table.get(name, {})
        rows.append(
            {
                "stage": name,
                "label": STAGE_LABELS[name],
                "p50": _number(values.get("p50"), 1),
                "p95": _number(values.get("p95"), 1),
            }
        )
    return rows


def in_view(boxes: Iterable[FrameBox]) -> list[dict[str, object]]:
    """Detections grouped by label, most frequent first, then by best score:
    ``person x5`` (with a multiplication sign), not ``person 76%, person 73%, ...``."""
    counts: dict[str, int] = {}
    best: dict[str, float] = {}
    for box in boxes:
        counts[box.label] = counts.get(box.label, 0) + 1
        best[box.label] = max(best.get(box.label, 0.0), box.score)
    ordered = sorted(counts, key=lambda label: (-counts[label], -best[label], label))
    return [
        {
            "label": label,
            "count": counts[label],
            "best": round(best[label], 3),
            "text": f"{label} {TIMES}{counts[label]}" if counts[label] > 1 else label,
        }
        for label in ordered
    ]
