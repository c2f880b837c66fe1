// The webcam page (and the kiosk): boot Python, start a frame source, stream frames to a
// node or run them locally, draw results. Every decision (which path a frame takes, when
// a node counts as stalled, when to reconnect, what a message means, what to draw) is
// made by the Python BrowserClient; this file wires browser APIs to it.

import { bootPython } from "./python.js";
import { FrameSource } from "./sources.js";
import { Overlay, KIOSK_LABEL_CSS_PX, LABEL_CSS_PX } from "./overlay.js";
import { NodeLink, probe } from "./node-link.js";
import { WtLink } from "./wt-link.js";
import { LocalEngine } from "./local-engine.js";
import { StatusView } from "./status-view.js";
import { FrameEncoder, supportedEncoders } from "./encoder.js";
import { PageApi } from "./page-api.js";

const config = JSON.parse(document.getElementById("edgesight-config").textContent);
const $ = (id) => document.getElementById(id);
const view = new StatusView({
  loading: $("loading"), progress: $("progress"), progressText: $("progress-text"),
  status: $("status"), message: $("message"), stats: $("stats-body"), badge: $("badge"),
  details: $("details-body"), timingsNote: $("timings-note"),
});
const TIMINGS_KEPT = 300;

if (config.kiosk) document.body.classList.add("kiosk");
if (config.kiosk && config.kiosk_in_view) document.body.classList.add("kiosk-in-view");
// Every period and retry comes from Python (pyodide_client/page_config.py: PageTiming),
// through the web app's config, so that it holds before Python has loaded too.
const timing = config.timing;

// Boot milestones on the Performance timeline (bench/first_box.py reads them): each marked
// once, at its first occurrence.
function markOnce(name) {
  if (performance.getEntriesByName(name, "mark").length === 0) performance.mark(name);
}

function nodeUrl(template) {
  return template.replace("{hostname}", location.hostname);
}

// The in-browser engine (model download, hash, worker, warm-up run) waits until the page
// needs it, so that it does not compete with the first box from a node: the first node
// result, a node link that closes or fails, or no node connection (open or opening) at a
// check every timing.local_start_check_ms (issue 18).

// The node list, or null when the web app cannot be reached (a kiosk offline).
async function fetchListing(url) {
  try {
    const response = await fetch(url, { cache: "no-store" });
    return response.ok ? await response.text() : null;
  } catch (err) {
    return null;
  }
}

// A stream token: POST to the web app; [status, body] (status 0: the request failed).
async function requestToken(url) {
  try {
    const response = await fetch(url, { method: "POST", credentials: "same-origin", cache: "no-store" });
    return [response.status, await response.text()];
  } catch (err) {
    return [0, ""]; // offline, or the web app is down: Python retries with backoff
  }
}

async function main() {
  // Started now, while Python boots (issue 18): the camera, the node list and the first
  // stream token (Python asks for one at its first tick; this answers that request).
  const source = new FrameSource($("video"), $("still"));
  const earlyCamera = source.useCamera().then(() => null, (err) => err || new Error("camera failed"));
  const earlyListing = config.registry_url ? fetchListing(config.registry_url) : null;
  let earlyToken = config.token_url ? { url: config.token_url, answer: requestToken(config.token_url) } : null;
  let python;
  try {
    python = await bootPython(config, (percent, text) => view.progress(percent, text));
  } catch (err) {
    view.progress(0, "Could not start.");
    view.problem("python", `The page could not start its Python runtime: ${err.message}. ${config.kiosk ? "Retrying shortly." : "Reload the page to try again."}`);
    if (config.kiosk) setTimeout(() => location.reload(), timing.kiosk_reload_ms);
    return;
  }
  const client = python.client;
  const timings = [];
  const pending = new Map(); // capture_ms -> {preprocess_ms, sent_ms}
  const lastBoxes = {}; // per source ("node", "local"): the boxes last drawn
  // Benchmarks and tests read timings and lastBoxes; setting paused stops sending frames.
  view.loaded();

  const overlay = new Overlay($("overlay"), config.kiosk ? $("kiosk-in-view") : $("detections"), {
    labelCssPx: config.kiosk ? KIOSK_LABEL_CSS_PX : LABEL_CSS_PX,
    avoid: [$("badge"), $("kiosk-in-view")],
  });
  const readies = []; // when each node connection became ready
  const api = new PageApi(client); // the documented API (docs/page-api.md); the rest is internal
  window.edgesight = { api, pyodide: python.pyodide, client, config, timings, lastBoxes, overlay, readies, paused: false };
  window.dispatchEvent(new CustomEvent("edgesight:ready", { detail: { version: api.version } }));
  let haveNewFrame = false;

  function draw(event) {
    const resultMs = performance.now();
    const sent = pending.get(event.capture_ms) || {};
    overlay.draw(event.boxes, sent.frame || { width: source.width, height: source.height }, event.in_view, event.expires_ms);
    if (event.boxes.length > 0) markOnce("edgesight:first-box");
    if (event.source === "node") {
      markOnce("edgesight:first-result");
      startLocal(); // loaded before the node can fail
    }
    lastBoxes[event.source] = event.boxes;
    api.published(event.api);
    const drawnMs = performance.now();
    client.note_drawn(event.capture_ms, drawnMs - resultMs, drawnMs);
    if (config.trace) { // a sampled frame's own stages, for its trace (issue 12)
      const report = client.take_trace_report(performance.timeOrigin);
      if (report) fetch(config.trace.url, { method: "POST", headers: { "Content-Type": "application/json" }, body: report }).catch(() => {});
    }
    pending.delete(event.capture_ms);
    timings.push({
      frame_id: event.frame_id, mode: event.source, capture_ms: event.capture_ms,
      preprocess_ms: sent.preprocess_ms, sent_ms: sent.sent_ms, result_ms: resultMs,
      drawn_ms: drawnMs, round_trip_ms: event.round_trip_ms, queue_ms: event.queue_ms,
      inference_ms: event.inference_ms, post_ms: event.post_ms, batch_size: event.batch_size,
    });
    if (timings.length > TIMINGS_KEPT) timings.splice(0, timings.length - TIMINGS_KEPT);
    for (const key of pending.keys()) if (key < event.capture_ms) pending.delete(key);
  }

  function handle(eventsJson) {
    for (const event of JSON.parse(eventsJson)) {
      if (event.type === "wake") wake(); // Python says: decide again now (the node changed)
      else if (event.type === "detections") draw(event);
      else if (event.type === "ready") {
        view.problem("node", "");
        view.problem("token", "");
        markOnce("edgesight:node-ready");
        readies.push({ node: event.node, at_ms: performance.now() }); // tests time switch-backs
      }
      else if (event.type === "refused") console.warn(`node refused the stream: ${event.message}`);
      else if (event.type === "error") console.warn(`node refused a message: ${event.message}`);
      else if (event.type === "send") flushLink(event.url);
      else if (event.type === "send_upgrade") flushUpgrade();
      else if (event.type === "upgraded") { // QUIC took over this node's link (issue 16)
        const old = link;
        old.key = event.retired_key; // it answers what it holds under a key of its own
        if (event.drain) draining.set(old.key, old); else old.abandon();
        link = upgrading;
        upgrading = null;
      } else if (event.type === "leave_upgrade") leaveUpgrade();
      else if (event.type === "promote") {
        if (link) draining.set(link.url, link);
        link = joining;
        joining = null;
      } else if (event.type === "leave") leave(event.url);
      else if (event.type === "access_refused") console.warn(`node refused the stream token: ${event.message}`);
      else if (event.type === "token_problem") view.problem("token", event.text); // worded by Python
      else if (event.type === "fatal") { // who refused and why: the view's refusal line
        console.warn(`node sent something this page cannot use: ${event.message}`);
        if (link) link.abandon();
        link = null;
      }
    }
  }

  // -- nodes: Python's tick says when to connect, switch, drop, ping or probe -------------
  // `link` carries the frames. A planned move opens `joining` beside it (make before
  // break); on the new node's HELLO Python says "promote", and the old link drains its
  // last answers until Python says "leave".
  let link = null;
  let joining = null;
  let upgrading = null; // the same node over QUIC, connecting beside `link` (issue 16)
  const draining = new Map(); // key (url, or a retired WebSocket's) -> NodeLink
  const isLive = (opened) => opened === link || opened === joining || draining.get(opened.key) === opened;
  function leaveUpgrade() {
    if (upgrading) upgrading.abandon();
    upgrading = null;
  }
  function flushUpgrade() {
    for (;;) {
      const message = pyBytes(client.take_upgrade_outgoing());
      if (!message.length) return;
      if (upgrading && upgrading.isOpen) upgrading.send(message);
    }
  }
  function leave(url) {
    for (const candidate of [joining, draining.get(url)]) {
      if (candidate && candidate.key === url) candidate.abandon();
    }
    if (joining && joining.url === url) joining = null;
    draining.delete(url);
  }
  function pyBytes(proxy) { // a Python bytes object -> a Uint8Array copy
    const buffer = proxy.getBuffer("u8");
    try { return buffer.data.slice(); } finally { buffer.release(); proxy.destroy(); }
  }
  // Messages Python wants on the node link (its AUTH, and a fresh one at each token refresh).
  function flushLink(url) {
    const target = url && joining && joining.url === url ? joining : link;
    for (;;) {
      const message = pyBytes(client.take_outgoing(url || ""));
      if (!message.length) return;
      if (target && target.isOpen) target.send(message);
    }
  }
  // Stream tokens: Python says when (first, then at 2/3 of each token's life); JS only asks.
  async function fetchToken(url) {
    const early = earlyToken && earlyToken.url === url ? earlyToken.answer : null;
    earlyToken = null; // used once: later requests (refreshes, retries) are Python's
    const [status, body] = await (early || requestToken(url));
    handle(client.on_token(status, body, performance.now())); // ends with "wake"
    pump();
  }
  // Python picks the transport per link (issue 16): QUIC when this browser has WebTransport
  // and the node offers it, else the WebSocket; the action says which.
  client.set_webtransport(typeof WebTransport === "function");
  const wtConstants = JSON.parse(client.wt_constants());
  function openLink(url, action) {
    const callbacks = {
      onmessage: (bytes) => {
        if (opened === upgrading) {
          handle(client.on_upgrade_message(url, bytes, performance.now()));
          pump();
          return;
        }
        if (!isLive(opened)) return;
        handle(client.on_message(opened.key, bytes, performance.now()));
        pump();
      },
      onclose: (code) => {
        if (opened === upgrading) {
          upgrading = null;
          client.on_upgrade_close(url, code, performance.now());
          wake();
          return;
        }
        if (!isLive(opened)) return;
        if (link === opened) link = null;
        if (joining === opened) joining = null;
        if (draining.get(opened.key) === opened) draining.delete(opened.key);
        startLocal(); // a node failed: in-browser detection may be needed next
        client.on_close(opened.key, code, performance.now());
        tickNow(); // fail over now
        pump();
      },
    };
    const opened = action.transport === "QUIC"
      ? new WtLink(action.wt_url, {
        ...callbacks,
        hashes: action.wt_hashes,
        constants: wtConstants,
        onopen: () => { // the page speaks first on QUIC
          if (!isLive(opened) && opened !== upgrading) return;
          const first = pyBytes(client.quic_opening(url, performance.now()));
          if (first.length) opened.send(first);
        },
        onabandon: (head) => { if (opened === link) client.frame_abandoned(url, head, performance.now()); },
      })
      : new NodeLink(nodeUrl(url), callbacks);
    opened.url = url;
    opened.key = url; // a retired WebSocket link gets a key of its own (issue 16)
    return opened;
  }
  function act(actions) {
    for (const action of JSON.parse(actions)) {
      if (action.do === "connect" || action.do === "switch") {
        leaveUpgrade();
        if (link) link.abandon();
        if (joining) joining.abandon();
        joining = null;
        link = openLink(action.url, action);
      } else if (action.do === "join") {
        if (joining) joining.abandon();
        joining = openLink(action.url, action);
      } else if (action.do === "leave") {
        leave(action.url);
      } else if (action.do === "upgrade") {
        leaveUpgrade();
        upgrading = openLink(action.url, action);
      } else if (action.do === "leave_upgrade") {
        leaveUpgrade();
      } else if (action.do === "abandon") {
        if (link) link.abandon();
        link = null;
        leaveUpgrade(); // an upgrade belongs to the link
        pump();
      } else if (action.do === "fetch_token") {
        fetchToken(action.url);
      } else if (action.do === "ping") {
        if (link && link.isOpen) link.send(pyBytes(client.ping(performance.now())));
      } else if (action.do === "probe") {
        probe(nodeUrl(action.url), {
          onmessage: (bytes) => {
            const reply = pyBytes(client.on_probe_message(action.url, bytes, performance.now()));
            if (!reply.length) wake(); // a probe answered (or failed): decide again now
            return reply;
          },
          onfail: () => { startLocal(); client.on_probe_failed(action.url, performance.now()); wake(); },
        });
      }
    }
  }
  async function refreshNodes(early = null) {
    // null: the web app is unreachable (a kiosk offline): keep the nodes already known
    const listing = await (early || fetchListing(config.registry_url));
    if (listing === null) return;
    try {
      client.update_nodes(listing, performance.now());
      wake();
    } catch (err) {
      console.warn(`the node list could not be used: ${err.message}`);
    }
  }
  // No fixed tick: Python says when it next needs one (client.next_tick_ms), and what
  // happens (a socket closing, a probe answering, a node list, a token) wakes it at once.
  let tickTimer = null;
  function tickNow() {
    clearTimeout(tickTimer);
    act(client.tick(performance.now()));
    const now = performance.now();
    tickTimer = setTimeout(tickNow, Math.max(0, client.next_tick_ms(now) - now));
  }
  function wake() {
    clearTimeout(tickTimer);
    tickTimer = setTimeout(tickNow, 0);
  }
  tickNow();
  if (config.registry_url) { refreshNodes(earlyListing); setInterval(refreshNodes, timing.registry_poll_ms); }
  if (config.report_url) {
    // What this page's user sees, for the operator's dashboards (issue 12); losing one is fine.
    setInterval(() => {
      fetch(config.report_url, { method: "POST", headers: { "Content-Type": "application/json" }, body: client.report(performance.now()) })
        .catch(() => {});
    }, timing.report_period_ms);
  }

  // -- local fallback -----------------------------------------------------------------------
  // Which backend (WebGPU or Wasm) and how many Wasm threads: Python's steps
  // (pyodide_client/backend_choice.py), each a worker to load and time, or one to use.
  const local = new LocalEngine({
    onoutput: ({ id, boxes, scores, ms }) => {
      handle(client.on_local_output(id, new Uint8Array(boxes.buffer), new Uint8Array(scores.buffer), ms, performance.now()));
      pump();
    },
    onerror: ({ id, key, message }) => {
      console.warn(`local inference failed: ${message}`);
      if (id !== null) followLocal(client.local_run_failed(key, id, message, performance.now()));
    },
    onlost: ({ key, message }) => followLocal(client.local_lost(key, message, performance.now())),
  });
  window.edgesight.local = local; // tests: local.loseDevice()
  async function webgpuProblem() { // '' when this browser gives a WebGPU adapter
    if (!navigator.gpu) return "this browser has no navigator.gpu";
    try {
      return (await navigator.gpu.requestAdapter()) ? "" : "no GPU adapter";
    } catch (err) {
      return `the adapter request failed: ${err.message}`;
    }
  }
  function sampleFrame() { // a real frame for the warm-up, when the camera has one yet
    if (!source.ready) return null;
    const frame = source.grab();
    return pyBytes(client.local_sample(frame.data, frame.width, frame.height));
  }
  let localSteps = Promise.resolve();
  function followLocal(stepJson) { // steps run one after another, never two loads at once
    localSteps = localSteps.then(() => driveLocal(JSON.parse(stepJson))).catch((err) => {
      console.error(err); // a bug, not the browser: say so, and keep later steps running
      view.problem("local", `Local detection stopped: ${err.message}`);
    });
  }
  async function driveLocal(step) {
    for (;;) {
      if (step.do === "load") {
        const entry = config.model[step.model] || config.model.local;
        let next;
        try {
          const model = await local.fetchModel({
            modelUrl: entry.url, checkSha256: (hex) => client.local_check_model(hex),
            sha256: (bytes) => client.sha256_hex(bytes), // where crypto.subtle is missing (http)
            idleMs: step.budget_ms,
          });
          const { warmupMs } = await local.load(step.key, {
            backend: step.backend, ortUrl: config.ort_url, model, threads: step.threads,
            io: entry.io, timedRuns: step.timed_runs, sample: sampleFrame(), budgetMs: step.budget_ms,
          });
          next = client.local_step_loaded(step.key, warmupMs, performance.now());
        } catch (err) {
          if (err.refused) {
            view.problem("local", err.message);
            return;
          }
          console.warn(`in-browser engine ${step.key}: ${err.message}`);
          next = client.local_step_failed(step.key, err.message, err.timedOut === true, performance.now());
        }
        step = JSON.parse(next);
      } else if (step.do === "use") {
        local.use(step.key);
        markOnce("edgesight:local-ready");
        for (const key of step.drop) local.drop(key);
        view.problem("local", "");
        pump();
        step = JSON.parse(client.local_next(performance.now()));
      } else if (step.do === "drop") {
        for (const key of step.keys) local.drop(key);
        step = JSON.parse(client.local_next(performance.now()));
      } else {
        if (step.do === "fail") view.problem("local", step.message);
        return;
      }
    }
  }
  let localStarted = false;
  async function startLocal() {
    if (localStarted) return;
    localStarted = true;
    const problem = await webgpuProblem();
    followLocal(client.local_begin(self.crossOriginIsolated === true, navigator.hardwareConcurrency || 1, problem, performance.now()));
  }

  // -- frames ------------------------------------------------------------------------------
  const encoder = new FrameEncoder();
  let isEncoding = false; // a compressed frame is being encoded: one at a time
  supportedEncoders().then((names) => client.set_encoders(names));

  // JPEG/WebP: Python chose format, size and quality; the browser's encoder does the pixels.
  async function sendImage(plan, width, height, captureMs, encodeStart) {
    isEncoding = true;
    const sentOn = link;
    try {
      const bytes = await encoder.encode(source.element, plan.width, plan.height, plan.encoding, plan.quality);
      if (link !== sentOn || !link.isOpen) return; // the node changed while encoding
      const message = client.encode_image(bytes, width, height, captureMs, performance.now());
      const buffer = message.getBuffer("u8");
      const preprocessMs = performance.now() - encodeStart;
      if (config.trace) flushLink(); // a sampled frame's TRACE goes just before it (issue 12)
      try { link.send(buffer.data); } finally { buffer.release(); message.destroy(); }
      pending.set(captureMs, { preprocess_ms: preprocessMs, sent_ms: performance.now(), frame: { width, height } });
      client.note_preprocess(preprocessMs, performance.now());
    } catch (err) {
      console.warn(`a frame could not be encoded: ${err.message}`);
    } finally {
      isEncoding = false;
    }
    pump();
  }

  function pump() {
    if (!haveNewFrame || !source.ready || window.edgesight.paused || isEncoding) return;
    const action = client.next_action(performance.now());
    if (action === "wait") return;
    haveNewFrame = false;
    const captureMs = performance.now();
    markOnce("edgesight:first-frame");
    if (action === "node") {
      if (!link || !link.isOpen) return;
      const plan = JSON.parse(client.plan_frame(source.width, source.height, captureMs));
      if (plan.encoding !== "raw") {
        sendImage(plan, source.width, source.height, captureMs, captureMs);
        return;
      }
    }
    const frame = source.grab();
    const size = { width: frame.width, height: frame.height };
    const encodeStart = performance.now();
    if (action === "node") {
      const message = client.encode_frame(frame.data, frame.width, frame.height, captureMs, encodeStart);
      const buffer = message.getBuffer("u8");
      const preprocessMs = performance.now() - encodeStart;
      if (config.trace) flushLink(); // a sampled frame's TRACE goes just before it (issue 12)
      try { link.send(buffer.data); } finally { buffer.release(); message.destroy(); }  // send() copies
      client.frame_sent(performance.now());
      pending.set(captureMs, { preprocess_ms: preprocessMs, sent_ms: performance.now(), frame: size });
      client.note_preprocess(preprocessMs, performance.now());
    } else {
      const id = client.local_encode(frame.data, frame.width, frame.height, captureMs, encodeStart);
      const tensorProxy = client.local_tensor();
      const view8 = tensorProxy.getBuffer("u8");
      const tensor = view8.data.slice();
      view8.release(); tensorProxy.destroy();
      const preprocessMs = performance.now() - encodeStart;
      local.run(id, tensor);
      pending.set(captureMs, { preprocess_ms: preprocessMs, sent_ms: performance.now(), frame: size });
      client.note_preprocess(preprocessMs, performance.now());
    }
  }
  source.onframe = () => { haveNewFrame = true; pump(); };

  // The camera is wanted until the user picks a file; "Use the camera again" wants it back.
  // A kiosk retries every failure (even a denied camera: nobody is there to click) and,
  // when configured (EDGESIGHT_KIOSK_SOURCE), loops a video or image meanwhile.
  let wantCamera = true;
  let cameraRetry = null;
  const useCameraButton = $("use-camera");
  function sourceChanged() {
    overlay.clear();
    client.source_changed(performance.now());
  }
  // What the source does goes to Python, which words the badge and the message (view.py).
  const reportSource = (event, kind, err) => { client.source_update(event, kind, (err && err.name) || ""); render(); };
  async function startCamera(early = null) {
    clearTimeout(cameraRetry);
    if (!wantCamera) return;
    if (source.kind === "none") reportSource("starting", "camera"); // a kiosk loop keeps playing
    try {
      if (early) { // the request made while Python booted
        const failure = await early;
        if (failure) throw failure;
      } else {
        await source.useCamera();
      }
      markOnce("edgesight:camera");
      if (!wantCamera) return; // a file was chosen meanwhile
      sourceChanged();
      reportSource("live", "camera");
      useCameraButton.hidden = true;
    } catch (err) {
      if (!wantCamera) return;
      const isRefusal = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      if (source.kind === "none") reportSource("failed", "camera", err);
      if (config.kiosk) {
        if (config.kiosk_source_url && source.kind === "none") await loopKioskSource();
        cameraRetry = setTimeout(startCamera, timing.kiosk_camera_retry_ms);
      } else if (!isRefusal) {
        cameraRetry = setTimeout(startCamera, timing.camera_retry_ms);
      }
    }
  }
  async function loopKioskSource() {
    try {
      await source.useUrl(config.kiosk_source_url);
      sourceChanged();
      reportSource("live", "url");
    } catch (err) {
      console.warn(`kiosk: the configured source cannot be played: ${err.message}`);
    }
  }
  source.onended = () => {
    reportSource("ended", "camera");
    cameraRetry = setTimeout(startCamera, timing.camera_ended_retry_ms);
  };
  async function useFile(file) {
    if (!file) return;
    wantCamera = false;
    clearTimeout(cameraRetry);
    sourceChanged();
    reportSource("starting", "file");
    try {
      await source.useFile(file);
      reportSource("live", "file");
    } catch (err) {
      console.warn(`the chosen file cannot be played: ${err.message}`);
      reportSource("failed", "file", err);
    }
    sourceChanged(); // drop boxes of frames grabbed while the file was loading
    useCameraButton.hidden = false;
  }
  useCameraButton.addEventListener("click", () => {
    wantCamera = true;
    startCamera();
  });
  wireFilePicking(useFile);

  function render() {
    const shown = JSON.parse(client.view(performance.now()));
    view.render(shown);
    view.problem("security", shown.security); // needs https; ws:// nodes an https page cannot use
    view.problem("camera", shown.source_problem); // denied, no camera, a file that cannot play
    view.problem("node", shown.refusal); // which server refused this page, and why
  }
  render();
  setInterval(render, timing.view_poll_ms);

  const localCheck = setInterval(() => {
    if (localStarted) clearInterval(localCheck);
    else if (!link && !joining) startLocal();
  }, timing.local_start_check_ms);
  await startCamera(earlyCamera);
  if (config.kiosk) keepAwake();
}

function wireFilePicking(use) {
  const input = $("file");
  const stage = $("stage");
  if (input) input.addEventListener("change", () => use(input.files[0]));
  stage.addEventListener("dragover", (event) => { event.preventDefault(); stage.classList.add("dropping"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dropping"));
  stage.addEventListener("drop", (event) => {
    event.preventDefault();
    stage.classList.remove("dropping");
    use(event.dataTransfer.files[0]);
  });
}

// Kiosks: keep the screen on where the browser allows it, and come back after errors.
async function keepAwake() {
  if (!("wakeLock" in navigator)) return;
  const request = async () => {
    try { await navigator.wakeLock.request("screen"); } catch (err) { console.warn(`wake lock refused: ${err.message}`); }
  };
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && request());
  await request();
}

if ("serviceWorker" in navigator) {
  // A new worker taking over a page it already controlled means a deploy: its cache holds
  // the new pages, scripts and Python bundle together, so load them all at once (sw.js).
  const wasControlled = navigator.serviceWorker.controller !== null;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (wasControlled) location.reload();
  });
  navigator.serviceWorker.register("/sw.js").catch((err) => console.warn(`offline cache unavailable: ${err.message}`));
}

if (config.kiosk) {
  const recover = (what) => {
    console.error(`kiosk: ${what}; reloading in ${timing.kiosk_reload_ms / 1000} s`);
    setTimeout(() => location.reload(), timing.kiosk_reload_ms);
  };
  window.addEventListener("error", (event) => recover(event.message));
  window.addEventListener("unhandledrejection", (event) => recover(String(event.reason)));
}

main().catch((err) => {
  console.error(err);
  view.problem("page", `Something went wrong: ${err.message}. ${config.kiosk ? "Restarting shortly." : "Reload the page to try again."}`);
  if (config.kiosk) setTimeout(() => location.reload(), timing.kiosk_reload_ms);
});
