"""What the page says, in plain words: the badge, the status line, the details, the rows
of the Timings panel and the "In view" summary. Pure functions of what the page knows;
``static/status-view.js`` only puts the strings on screen.

Wording rules (issue 10): say where detection runs in words a visitor understands, with
its own colour for "in this browser"; no number before there is a measurement ("—"
instead of "0.0 fps"); URLs, thread counts and retry countdowns go to the details, not the
main line; the Timings panel lists only the stages the current mode has.

What is shown is true now (issue 18): the badge says detection runs only while frames flow
and boxes come back; otherwise it says why not ("Not detecting: camera access denied"), or
"Starting…" in its neutral colour while nothing has gone wrong yet. Problems are said once,
plainly, with who and what to change, and never with an HTTP status or a browser's
internal error text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .page_source import SourceState
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
    "refusal_text",
    "source_problem",
    "status_line",
    "timing_rows",
    "timings_note",
    "token_problem_text",
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
    source: str = SourceState.LIVE.value  # page_source.SourceState
    frames_flow: bool = True  # boxes were drawn in the last seconds
    is_kiosk: bool = False
    refusal: str = ""  # the last node refusal, until a node accepts the page
    camera_failure: str = ""  # why a kiosk loops its configured source instead of the camera
    transport: str | None = None  # "QUIC" | "WebSocket" (issue 16); None: no link
    # where in-browser detection runs (issue 20): "wasm" or "webgpu", and why
    backend: str = "wasm"
    backend_note: str = ""
    # for the page API (page_api.py, issue 19): facts the page knows but does not word
    identity: str | None = None  # who the node accepted the page as (its WELCOME)
    local_frame_ms: float | None = None  # the in-browser engine's measured time a frame
    has_local_standby: bool = False  # a Wasm engine loaded beside a WebGPU one
    local_problem: str = ""  # why in-browser detection cannot start
    token_problem: str = ""  # why the page has no stream token


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:.{digits}f}"


STARTING = "Starting…"
_NOT_DETECTING = {
    SourceState.DENIED: "camera access denied",
    SourceState.NO_CAMERA: "no camera",
    SourceState.NEEDS_HTTPS: "the camera needs https",
    SourceState.CAMERA_FAILED: "the camera could not start",
    SourceState.BAD_FILE: "that file cannot be played",
    SourceState.ENDED: "the camera stopped",
}
_SOURCE_PROBLEMS = {
    SourceState.DENIED: "Camera access was denied. Allow the camera for this site in the "
    "browser's settings and reload, or choose a video or image file.",
    SourceState.NO_CAMERA: "No camera was found. Connect a camera (detection starts when one "
    "appears) or choose a video or image file.",
    # the page's security problem (page_origin.py) already says what to do
    SourceState.NEEDS_HTTPS: "",
    SourceState.CAMERA_FAILED: "The camera is in use by another program or could not start. "
    "Trying again every few seconds.",
    SourceState.BAD_FILE: "That file cannot be played here. Choose a video or image file.",
    SourceState.ENDED: "The camera stopped. Reconnect it; detection resumes by itself.",
}
_KIOSK_SOURCE_PROBLEMS = {
    SourceState.DENIED: "Camera access is denied for this kiosk. Allow the camera for this "
    "site in the browser's settings (or start it with the camera allowed); retrying every "
    "few seconds.",
    SourceState.NO_CAMERA: "No camera is connected; detection starts by itself when one is "
    "plugged in.",
}


def badge(s: Snapshot) -> dict[str, str]:
    """Where detection runs, for the badge over the picture: ``kind`` picks its colour.
    It says "Detecting" only while frames flow and boxes come back."""
    source = SourceState(s.source)
    if source in _NOT_DETECTING:
        return {"kind": "none", "text": f"Not detecting: {_NOT_DETECTING[source]}"}
    if s.mode == "none" and s.local_state in ("failed", "refused"):
        return {"kind": "none", "text": "Not detecting: no server answers, and this browser cannot"}
    if source is SourceState.STARTING or not s.frames_flow or s.mode == "none":
        return {"kind": "starting", "text": STARTING}
    if s.mode == "node":
        return {"kind": "node", "text": f"Detecting on server {s.node or ''}".strip()}
    if s.backend == "webgpu":
        return {"kind": "local", "text": "Detecting in this browser, GPU"}
    return {"kind": "local", "text": "Detecting in this browser"}


def source_problem(s: Snapshot) -> str:
    """What is wrong with the picture source, and what to do, for the message area; ''
    while it works."""
    if s.camera_failure:  # a kiosk's loop plays: say why not the camera, and that it retries
        failure = SourceState(s.camera_failure)
        text = _KIOSK_SOURCE_PROBLEMS.get(failure) or _SOURCE_PROBLEMS.get(failure, "")
        return f"{text} Showing the configured loop meanwhile.".strip()
    source = SourceState(s.source)
    if s.is_kiosk and source in _KIOSK_SOURCE_PROBLEMS:
        return _KIOSK_SOURCE_PROBLEMS[source]
    return _SOURCE_PROBLEMS.get(source, "")


def refusal_text(node: str, why: str, **facts: str) -> str:
    """A node's refusal in words, saying who refused and why, and where to fix it
    (issue 18); ``why`` is one of ``REFUSALS``' keys."""
    return f"Server {node} " + REFUSALS[why].format(**facts)


REFUSALS = {
    "origin": "did not let this page connect, although the web app lists it as running: "
    "it most likely does not accept pages from {origin} (see EDGESIGHT_ALLOWED_ORIGINS on "
    "the server), or this browser cannot reach {url}.",
    "overloaded": "is at capacity and refused this page; trying another server, "
    "detecting in this browser meanwhile.",
    "model": "runs another model ({model}) than this page ({page_model}), so it is not used "
    "(see EDGESIGHT_MODEL on the server).",
    "broken": "sent something this page cannot use ({detail}); it is not used for a while.",
    "token": "refused this page's stream token ({detail}). If this goes on, the server may "
    "not have the web app's key (see EDGESIGHT_TOKEN_PUBLIC_KEY on the server).",
    "sign_in": "needs a stream token, and this page has none: sign in, then reload.",
}


def token_problem_text(status: int, needs_sign_in: bool) -> str:
    """The message for a failed stream-token request. Offline (status 0) says nothing:
    the page detects in this browser, and the badge says so; no HTTP codes either way."""
    if needs_sign_in:
        return "Sign in again to use the detection servers (reload this page)."
    if status == 0:
        return ""
    return (
        "The web app did not give this page a stream token; detecting in this browser "
        "until it does."
    )


def status_line(s: Snapshot) -> str:
    """The one line under the picture."""
    if SourceState(s.source) in _NOT_DETECTING:
        return "Detection starts when there is a picture: see the message below."
    if SourceState(s.source) is SourceState.STARTING:
        return "Waiting for the first picture…"
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


def timings_note(s: Snapshot) -> str:
    """Under the Timings table: the speed measured here and now, never a constant."""
    if s.fps is None or not s.frames_flow:
        return ""
    # The status line's number, as it shows it: rounded to whole frames, 1.3 fps read
    # "1 frames" and 0.4 fps "0 frames a second" while boxes came.
    rate = f"{_number(s.fps, 1)} frames a second"
    if s.mode == "local":
        threads = f"{s.threads} thread{'' if s.threads == 1 else 's'}"
        return f"This browser detects {rate} here ({threads}, {s.model})."
    if s.mode == "node":
        return f"Server {s.node} answers {rate} to this page."
    return ""


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
        if s.transport:
            lines.append(f"Transport: {s.transport}")
        lines.append(f"Round trip to the server: {_number(s.round_trip_ms)} ms")
        if s.wire and s.wire.get("frame_bytes"):
            lines.append(wire_text(s.wire))
    elif s.mode == "local" and s.backend == "webgpu":
        lines.append("In this browser, GPU: onnxruntime-web (WebGPU)")
    elif s.mode == "local":
        threads = f"{s.threads} thread{'' if s.threads == 1 else 's'}"
        lines.append(f"In this browser: onnxruntime-web (WebAssembly, {threads})")
    if s.backend_note:
        lines.append(f"In-browser engine: {s.backend_note}")
    if s.node_url and s.mode != "node":
        lines.append(f"Connecting to: {s.node_url}")
        if s.transport:
            lines.append(f"Transport: {s.transport}")
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
