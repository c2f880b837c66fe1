"""Headless Chromium (Debian's, real) over WebTransport to a real node: the browser opens
``new WebTransport(url, {serverCertificateHashes})`` with the hash the node announces, and
speaks pyodide_client/quic_framing.py's framing (control stream, a stream per frame,
answers on their own streams). Bytes are built and read in Python; the page only moves
them, as static/ does."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM_ARGS, start_node  # type: ignore[import-not-found]
from playwright.sync_api import Browser, Playwright

from edgesight.serving import ServerThread
from pyodide_client.protocol import (
    Dropped,
    DropReason,
    Frame,
    Hello,
    Ping,
    Pong,
    Result,
    Welcome,
    parse,
)
from pyodide_client.quic_framing import frame_control
from pyodide_client.stream import NodeStream
from tests.media import rgba_photo

ROOT = Path(__file__).resolve().parents[1]
# WebTransport is QUIC: the suite's usual --disable-quic must not be here.
WT_ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--disable-quic"]

FLOW_JS = """
async ({url, hash, ping, auth, frame}) => {
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const hex = (u8) => btoa(String.fromCharCode(...u8));
  const concat = (parts) => {
    const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { joined.set(p, at); at += p.length; }
    return joined;
  };
  const out = {control: [], answers: [], error: null};
  const t0 = performance.now();
  let wt;
  try {
    const hashes = [{algorithm: "sha-256", value: b64(hash)}];
    wt = new WebTransport(url, {serverCertificateHashes: hashes});
    await wt.ready;
  } catch (err) { out.error = String(err); return out; }
  out.ready_ms = performance.now() - t0;
  const stream = await wt.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  let buffered = new Uint8Array(0);
  const nextControl = async () => {
    for (;;) {
      if (buffered.length >= 4) {
        const size = new DataView(buffered.buffer, buffered.byteOffset).getUint32(0, true);
        if (buffered.length >= 4 + size) {
          const message = buffered.slice(4, 4 + size);
          buffered = buffered.slice(4 + size);
          return message;
        }
      }
      const {value, done} = await reader.read();
      if (done) throw new Error("control stream ended");
      buffered = concat([buffered, value]);
    }
  };
  await writer.write(b64(ping));
  out.control.push(hex(await nextControl()));  // HELLO
  await writer.write(b64(auth));
  out.control.push(hex(await nextControl()));  // PONG
  out.control.push(hex(await nextControl()));  // WELCOME
  const answers = wt.incomingUnidirectionalStreams.getReader();
  const frameStream = await wt.createUnidirectionalStream();
  const frameWriter = frameStream.getWriter();
  const sent = performance.now();
  await frameWriter.write(b64(frame));
  await frameWriter.close();
  const {value: answerStream} = await answers.read();
  const parts = [];
  const answerReader = answerStream.getReader();
  for (;;) { const {value, done} = await answerReader.read(); if (done) break; parts.push(value); }
  out.round_trip_ms = performance.now() - sent;
  out.answers.push(hex(concat(parts)));
  wt.close();
  return out;
}
"""


def _readyz(server: ServerThread) -> dict[str, object]:
    with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=10) as response:
        body: dict[str, object] = json.load(response)
    return body


@pytest.fixture(scope="module")
def wt_browser(playwright_driver: Playwright, chromium_path: str) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(executable_path=chromium_path, args=WT_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def node() -> Iterator[ServerThread]:
    with start_node("wt-node") as server:
        yield server


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_chromium_gets_boxes_over_webtransport(wt_browser: Browser, node: ServerThread) -> None:
    info = _readyz(node)
    page = wt_browser.new_page()
    page.goto(f"{node.http_url}/healthz")  # a secure context (loopback) with an Origin
    stream = NodeStream(max_in_flight=2, can_encode=())
    rgba, w, h = rgba_photo("chelsea")
    # The frame is made after the HELLO (its shape): two steps, as a page does.
    out = page.evaluate(
        FLOW_JS,
        {
            "url": f"https://127.0.0.1:{info['wt_port']}/wt",
            "hash": _b64(bytes.fromhex(str(info["wt_cert_sha256"]))),
            "ping": _b64(frame_control(Ping(3, 0.0).serialize())),
            "auth": _b64(frame_control(stream.auth(""))),
            "frame": _b64(_frame_for(node, rgba, w, h)),
        },
    )
    assert out["error"] is None, out["error"]
    control = [parse(base64.b64decode(m)) for m in out["control"]]
    assert [type(m) for m in control] == [Hello, Pong, Welcome]
    (answer,) = (parse(base64.b64decode(a)) for a in out["answers"])
    assert isinstance(answer, Result)
    assert any(d.score > 0.5 for d in answer.detections)


def _frame_for(node: ServerThread, rgba: bytes, w: int, h: int) -> bytes:
    """A FRAME for this node's model, made by a NodeStream that read its HELLO."""
    from websockets.sync.client import connect

    with connect(node.ws_url, compression=None, max_size=None, open_timeout=10) as ws:
        stream = NodeStream(max_in_flight=2, can_encode=())
        stream.receive(ws.recv(timeout=10), now_ms=0.0)
        for message in stream.data_to_send():
            ws.send(message)
        while stream.state.value != "ready":
            stream.receive(ws.recv(timeout=10), now_ms=0.0)
        return stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=1.0)


# static/wt-link.js itself, in Chromium: three frames back to back; the middle one is
# abandoned on the wire (latest frame wins) and reported, the oldest is kept (something
# always gets through), so the first and the third are answered. Each answer comes twice
# (its datagram and its stream: the page's Python takes one), so this waits for two
# different answers, then for the PONG of a last PING.
#
# With ``taken_first``, each frame goes once the transport took the one before (its
# write resolved), and every stream's close is held, as on a distant link where a FIN's
# acknowledgement takes a round trip: no frame is then still uploading, and none is reset.
LINK_JS = """
async ({url, hash, constants, ping, auth, frames, answers, pong, taken_first}) => {
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const held = [];
  let onTaken = null;  // resolves when the transport takes the next write
  if (taken_first) {
    const proto = WritableStreamDefaultWriter.prototype;
    const write = proto.write, close = proto.close;
    proto.write = function (chunk) {
      const done = write.call(this, chunk);
      done.then(() => { const took = onTaken; onTaken = null; if (took) took(); }, () => {});
      return done;
    };
    proto.close = function () {  // the FIN goes now; the caller hears of it when released
      const done = close.call(this);
      return new Promise((resolve, reject) => held.push(() => done.then(resolve, reject)));
    };
  }
  const taken = () => new Promise((resolve, reject) => {  // the next write taken, within 10 s
    const timer = setTimeout(() => reject(new Error("the transport never took a frame")), 10000);
    onTaken = () => { clearTimeout(timer); resolve(); };
  });
  const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
  const { WtLink } = await import("/static/wt-link.js");
  const queue = [];
  let waiting = null;
  const next = () => new Promise((resolve, reject) => {  // a message, within 10 s
    if (queue.length) return resolve(queue.shift());
    const timer = setTimeout(() => reject(new Error("no message from the node in 10 s")), 10000);
    waiting = (item) => { clearTimeout(timer); resolve(item); };
  });
  const out = {messages: [], abandoned: [], closed: null};
  const link = await new Promise((resolve) => {
    const opened = new WtLink(url, {
      hashes: [hash], constants,
      onopen: () => resolve(opened),
      onmessage: (m) => {
        const item = hex(m);
        if (waiting) { const w = waiting; waiting = null; w(item); } else queue.push(item);
      },
      onclose: (code) => { out.closed = code; resolve(opened); },
      onabandon: (head) => out.abandoned.push(hex(head)),
    });
  });
  if (out.closed !== null) return out;
  link.send(b64(ping));
  out.messages.push(await next(), await next());  // HELLO, PONG
  link.send(b64(auth));
  out.messages.push(await next());  // WELCOME
  for (const frame of frames) {
    const took = taken_first ? taken() : null;
    link.send(b64(frame));  // back to back, or once the transport took it
    if (took) await took;
  }
  const distinct = new Set();
  while (distinct.size < answers) {
    const item = await next();
    out.messages.push(item);
    distinct.add(item);
  }
  link.send(b64(ping));
  for (;;) {  // until its PONG: only answers' second copies may come before it
    const item = await next();
    out.messages.push(item);
    if (parseInt(item.substr(6, 2), 16) === pong) break;
  }
  for (const release of held) release();
  link.abandon();
  return out;
}
"""


def three_frames_through_wt_link(
    wt_browser: Browser, node: ServerThread, answers: int, taken_first: bool
) -> tuple[dict[str, Any], list[bytes]]:
    """LINK_JS's result for three frames of chelsea sent to ``node``, and the frames."""
    from pyodide_client.protocol import MessageType
    from pyodide_client.transport import js_constants

    info = _readyz(node)
    page = wt_browser.new_page()
    page.goto(f"{node.http_url}/healthz")
    rgba, w, h = rgba_photo("chelsea")
    first = parse(_frame_for(node, rgba, w, h))
    assert isinstance(first, Frame)
    frames = [replace(first, frame_id=first.frame_id + i).serialize() for i in range(3)]
    page.route(
        "**/static/wt-link.js",
        lambda route: route.fulfill(
            path=str(ROOT / "static" / "wt-link.js"), content_type="text/javascript"
        ),
    )
    out: dict[str, Any] = page.evaluate(
        LINK_JS,
        {
            "url": f"https://127.0.0.1:{info['wt_port']}/wt",
            "hash": str(info["wt_cert_sha256"]),
            "constants": js_constants(),
            "ping": _b64(Ping(3, 0.0).serialize()),
            "auth": _b64(NodeStream(can_encode=()).auth("")),
            "frames": [_b64(f) for f in frames],
            "answers": answers,
            "pong": int(MessageType.PONG),
            "taken_first": taken_first,
        },
    )
    assert out["closed"] is None
    return out, frames


def frame_ids(frames: list[bytes]) -> list[int]:
    return [m.frame_id for f in frames if isinstance(m := parse(f), Frame)]


def test_wt_link_resets_a_superseded_frame_and_reports_it(
    wt_browser: Browser, node: ServerThread
) -> None:
    from pyodide_client.quic_framing import AnswerCopies

    out, frames = three_frames_through_wt_link(wt_browser, node, answers=2, taken_first=False)
    first_id = frame_ids(frames)[0]
    copies = AnswerCopies()  # as the page's Python takes them
    messages = [parse(m) for h in out["messages"] if copies.is_first(m := bytes.fromhex(h))]
    assert [type(m) for m in messages] == [Hello, Pong, Welcome, Result, Result, Pong]
    assert copies.duplicates >= 1  # answers' datagram copies reach the page too
    answered = {m.frame_id for m in messages[3:5] if isinstance(m, Result)}
    # the oldest (kept) and the newest; the one between never came
    assert answered == {first_id, first_id + 2}
    assert [bytes.fromhex(h) for h in out["abandoned"]] == [frames[1][:16]]


def test_wt_link_resets_no_frame_the_transport_already_took(
    wt_browser: Browser, node: ServerThread
) -> None:
    """A frame counts as uploading until its write resolves, not until its close does:
    Chromium resolves a close when the FIN is acknowledged, a round trip later, and the
    page reset frames the node already had whole (50 ms and 1 % loss: 13 fps drawn of 30
    sent, and answers to frames "not in flight"; bench/browser_lossy_link.py)."""
    from pyodide_client.quic_framing import AnswerCopies

    out, frames = three_frames_through_wt_link(wt_browser, node, answers=3, taken_first=True)
    assert out["abandoned"] == []  # the page reset none of them
    copies = AnswerCopies()
    outcomes = {
        m.frame_id: m
        for h in out["messages"]
        if copies.is_first(b := bytes.fromhex(h)) and isinstance(m := parse(b), Result | Dropped)
    }
    ids = frame_ids(frames)
    # every frame reached the node whole and got its one outcome there: the newest is run;
    # an older one is run too, or the node's batcher dropped it, superseded by a newer one
    # while it waited (the node's choice, told to the page: not a reset)
    assert sorted(outcomes) == ids
    assert isinstance(outcomes[ids[-1]], Result)
    for frame_id in ids[:-1]:
        outcome = outcomes[frame_id]
        assert isinstance(outcome, Result) or outcome == Dropped(frame_id, DropReason.SUPERSEDED)
