// The webcam page (and the kiosk): boot Python, then be its hands. Every event (a socket's
// message, a camera frame, the timer, a fetch's answer, ...) goes to one entry point,
// client.handle(event, bytes?), which returns the commands to carry out (open, send and
// close sockets by id, grab or encode a frame, draw, render, fetch, ...) and when to report
// the timer next; client.take(blob) hands over the bytes a command names. Every decision
// (which node, when to move, what a message means, what to draw, every period and retry)
// is Python's (pyodide_client/page_edge.py; the events and commands: docs/page-core.md).

import { bootPython } from "./python.js";
import { FrameSource } from "./sources.js";
import { Overlay, KIOSK_LABEL_CSS_PX, LABEL_CSS_PX } from "./overlay.js";
import { NodeLink } from "./node-link.js";
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
// Before Python has loaded (and after a failed event), the periods come with the web app's
// config (pyodide_client/page_config.py: PageTiming); otherwise Python schedules them all.
const timing = config.timing;

// Boot milestones on the Performance timeline (bench/first_box.py reads them): each marked
// once, at its first occurrence.
function markOnce(name) {
  if (performance.getEntriesByName(name, "mark").length === 0) performance.mark(name);
}

// A fetch command's answer: [status, body] (status 0: the request failed: offline, or the
// web app is down; Python keeps what it knows and retries).
async function fetchText(url, method) {
  try {
    const response = await fetch(url, { method, credentials: "same-origin", cache: "no-store" });
    return [response.status, await response.text()];
  } catch (err) {
    return [0, ""];
  }
}

async function main() {
  // Started now, while Python boots (issue 18): the camera, the node list and the first
  // stream token. Python asks for each once it is up; the first ask takes these answers.
  const source = new FrameSource($("video"), $("still"));
  let earlyCamera = source.useCamera().then(() => null, (err) => err || new Error("camera failed"));
  const early = new Map(); // "what url" -> the answer of a fetch made while Python booted
  if (config.registry_url) early.set(`nodes ${config.registry_url}`, fetchText(config.registry_url, "GET"));
  if (config.token_url) early.set(`token ${config.token_url}`, fetchText(config.token_url, "POST"));
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
  const pending = new Map(); // capture_ms -> {preprocess_ms, sent_ms, frame}
  view.loaded();

  const overlay = new Overlay($("overlay"), config.kiosk ? $("kiosk-in-view") : $("detections"), {
    labelCssPx: config.kiosk ? KIOSK_LABEL_CSS_PX : LABEL_CSS_PX,
    avoid: [$("badge"), $("kiosk-in-view")],
  });
  const api = new PageApi(client, overlay); // the documented API (docs/page-api.md)
  // `testing` is not the API: the project's own tests and benchmarks reach inside through it
  // (Python, the client, per-stage timings, the engine; `paused` stops sending frames).
  const testing = { pyodide: python.pyodide, client, timings, local: null, paused: false };
  window.edgesight = { api, testing };
  window.dispatchEvent(new CustomEvent("edgesight:ready", { detail: { version: api.version } }));

  // -- the one entry point ---------------------------------------------------------------
  // One timer, re-armed to each reply's next_tick_ms. handle() carries out the reply's
  // commands in order, except those named in `keep`, which it returns (answers the caller
  // reads: a model check, a digest, a warm-up sample, the next in-browser engine step).
  let timer = null;
  function handle(event, data, keep = []) {
    event.now_ms = performance.now();
    let reply;
    try {
      reply = JSON.parse(client.handle(JSON.stringify(event), data));
    } finally {
      clearTimeout(timer); // a failed event (a bug) must not stop the clock: try again soon
      const dueMs = reply ? reply.next_tick_ms : performance.now() + timing.view_poll_ms;
      timer = setTimeout(() => handle({ event: "timer" }), Math.max(0, dueMs - performance.now()));
    }
    const kept = [];
    for (const command of reply.commands) {
      if (keep.includes(command.do)) kept.push(command);
      else carryOut(command);
    }
    return kept;
  }
  function pyBytes(proxy) { // a Python bytes object -> a Uint8Array copy
    const buffer = proxy.getBuffer("u8");
    try { return buffer.data.slice(); } finally { buffer.release(); proxy.destroy(); }
  }
  const take = (blob) => pyBytes(client.take(blob));

  function carryOut(c) {
    switch (c.do) {
      case "open": openSocket(c); break;
      case "send": { // straight from Python's buffer: send() copies (both socket kinds)
        const proxy = client.take(c.blob);
        const buffer = proxy.getBuffer("u8");
        const preprocessMs = c.frame ? performance.now() - frameStartMs : 0;
        try {
          const socket = sockets.get(c.socket);
          if (socket && socket.isOpen) socket.send(buffer.data);
        } finally {
          buffer.release();
          proxy.destroy();
        }
        if (c.frame) frameSent(c.frame, preprocessMs);
        break;
      }
      case "close": {
        const socket = sockets.get(c.socket);
        sockets.delete(c.socket);
        if (socket) socket.abandon();
        break;
      }
      case "fetch": {
        const key = `${c.what} ${c.url}`;
        const answer = early.get(key) || fetchText(c.url, c.method);
        early.delete(key); // used once: later requests (polls, refreshes, retries) are Python's
        answer.then(([status, body]) => handle({ event: "fetched", what: c.what, status, body }));
        break;
      }
      case "post": // what this page's user sees, a sampled frame's trace: losing one is fine
        fetch(c.url, { method: "POST", headers: { "Content-Type": "application/json" }, body: c.body }).catch(() => {});
        break;
      case "grab": grab(c); break;
      case "local_run": {
        const tensor = take(c.blob);
        const preprocessMs = performance.now() - frameStartMs;
        if (!local.worker) { // a step to use an engine is still queued behind a load
          handle({ event: "local_run_failed", key: "", id: c.id, message: "no in-browser engine in use yet" });
          break;
        }
        local.run(c.id, tensor);
        frameSent(c.frame, preprocessMs);
        break;
      }
      case "draw": draw(c); break;
      case "ready":
        view.problem("node", "");
        view.problem("token", "");
        markOnce("edgesight:node-ready");
        api.serverReady(c.api); // tests time switch-backs on it
        break;
      case "warn": console.warn(c.text); break;
      case "problem": view.problem(c.slot, c.text); break;
      case "render":
        view.render(c.view);
        view.problem("security", c.view.security); // needs https; ws:// nodes an https page cannot use
        view.problem("camera", c.view.source_problem); // denied, no camera, a file that cannot play
        view.problem("node", c.view.refusal); // which server refused this page, and why
        break;
      case "check_webgpu": webgpuProblem().then((problem) => handle({ event: "webgpu", problem })); break;
      case "local_step": followLocal(c.step); break;
      case "camera": startCamera(); break;
      case "play": playUrl(c.url); break;
      case "clear_overlay": overlay.clear(); break;
      case "camera_button": useCameraButton.hidden = !c.is_shown; break;
      case "dropped": break; // counted by Python
      default: console.warn(`the page core asked for "${c.do}", which this page does not know`);
    }
  }

  // -- sockets: held by the id Python gave each --------------------------------------------
  const sockets = new Map(); // id -> NodeLink | WtLink
  function openSocket(c) {
    const id = c.socket;
    const isMine = () => sockets.get(id) === opened;
    const callbacks = {
      onopen: () => { if (isMine()) handle({ event: "socket_open", socket: id }); },
      onmessage: (bytes) => { if (isMine()) handle({ event: "socket_message", socket: id }, bytes); },
      onclose: (code) => {
        if (!isMine()) return;
        sockets.delete(id);
        handle({ event: "socket_close", socket: id, code });
      },
    };
    const opened = c.transport === "QUIC"
      ? new WtLink(c.wt_url, {
        ...callbacks,
        hashes: c.wt_hashes,
        constants: c.constants,
        onabandon: (head) => { if (isMine()) handle({ event: "frame_abandoned", socket: id }, head); },
      })
      : new NodeLink(c.url, { ...callbacks, guardMs: c.guard_ms || 0 });
    sockets.set(id, opened);
  }

  // -- frames ------------------------------------------------------------------------------
  const encoder = new FrameEncoder();
  let frameStartMs = 0; // when the page began preparing the frame now on its way
  source.onframe = () => {
    if (!testing.paused && source.ready) handle({ event: "frame", width: source.width, height: source.height });
  };
  function grab(c) {
    if (testing.paused || !source.ready) {
      handle({ event: "frame_skipped" });
      return;
    }
    markOnce("edgesight:first-frame");
    if (c.to === "node" && c.encoding !== "raw") {
      encodeImage(c);
      return;
    }
    const frame = source.grab();
    frameStartMs = performance.now();
    handle({ event: "pixels", width: frame.width, height: frame.height }, frame.data);
  }
  // JPEG/WebP: Python chose format, size and quality; the browser's encoder does the pixels.
  async function encodeImage(c) {
    frameStartMs = c.capture_ms;
    let bytes;
    try {
      bytes = await encoder.encode(source.element, c.width, c.height, c.encoding, c.quality);
    } catch (err) {
      console.warn(`a frame could not be encoded: ${err.message}`);
      handle({ event: "frame_skipped" });
      return;
    }
    handle({ event: "encoded" }, bytes);
  }
  function frameSent(frame, preprocessMs) {
    pending.set(frame.capture_ms, { preprocess_ms: preprocessMs, sent_ms: performance.now(), frame: { width: frame.width, height: frame.height } });
    handle({ event: "sent", preprocess_ms: preprocessMs });
  }
  function draw(event) {
    const resultMs = performance.now();
    const sent = pending.get(event.capture_ms) || {};
    overlay.draw(event.boxes, sent.frame || { width: source.width, height: source.height }, event.in_view, event.expires_ms);
    if (event.boxes.length > 0) markOnce("edgesight:first-box");
    if (event.source === "node") markOnce("edgesight:first-result");
    const drawnMs = performance.now();
    api.published(event.api, drawnMs);
    handle({ event: "drawn", capture_ms: event.capture_ms, draw_ms: drawnMs - resultMs });
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

  // -- the in-browser engine: Python's steps (pyodide_client/backend_choice.py), each a
  // worker to load and time, or one to use; run one after another, never two loads at once.
  const local = new LocalEngine({
    onoutput: ({ id, boxes, scores, ms }) => {
      const boxBytes = new Uint8Array(boxes.buffer, boxes.byteOffset, boxes.byteLength);
      const scoreBytes = new Uint8Array(scores.buffer, scores.byteOffset, scores.byteLength);
      const both = new Uint8Array(boxBytes.length + scoreBytes.length);
      both.set(boxBytes);
      both.set(scoreBytes, boxBytes.length);
      handle({ event: "local_output", id, inference_ms: ms, boxes_bytes: boxBytes.length }, both);
    },
    onerror: ({ id, key, message }) => {
      console.warn(`local inference failed: ${message}`);
      if (id !== null) handle({ event: "local_run_failed", key, id, message });
    },
    onlost: ({ key, message }) => handle({ event: "local_lost", key, message }),
  });
  testing.local = local; // tests: local.loseDevice()
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
    const [answer] = handle({ event: "sample", width: frame.width, height: frame.height }, frame.data, ["sample"]);
    return take(answer.blob);
  }
  const localQueue = [];
  let isLocalBusy = false;
  function followLocal(step) {
    localQueue.push(step);
    if (!isLocalBusy) runLocalSteps();
  }
  async function runLocalSteps() { // a "use" or "drop" step runs at once when none is loading
    isLocalBusy = true;
    try {
      while (localQueue.length) await driveLocal(localQueue.shift());
    } catch (err) {
      console.error(err); // a bug, not the browser: say so, and keep later steps running
      view.problem("local", `Local detection stopped: ${err.message}`);
      localQueue.length = 0;
    } finally {
      isLocalBusy = false;
    }
  }
  function nextStep(event) { // the step Python answers an event of this engine with
    const [answer] = handle(event, undefined, ["local_step"]);
    return answer ? answer.step : null;
  }
  async function driveLocal(step) {
    while (step) {
      if (step.do === "load") {
        const entry = config.model[step.model] || config.model.local;
        let event;
        try {
          const model = await local.fetchModel({
            modelUrl: entry.url,
            checkSha256: (hex) => handle({ event: "model_digest", sha256: hex }, undefined, ["model_check"])[0].refusal,
            // where crypto.subtle is missing (http)
            sha256: (bytes) => handle({ event: "digest" }, bytes, ["digest"])[0].sha256,
            idleMs: step.budget_ms,
          });
          const { warmupMs } = await local.load(step.key, {
            backend: step.backend, ortUrl: config.ort_url, model, threads: step.threads,
            io: entry.io, timedRuns: step.timed_runs, sample: sampleFrame(), budgetMs: step.budget_ms,
          });
          event = { event: "local_loaded", key: step.key, warmup_ms: warmupMs };
        } catch (err) {
          if (err.refused) {
            view.problem("local", err.message);
            return;
          }
          console.warn(`in-browser engine ${step.key}: ${err.message}`);
          event = { event: "local_failed", key: step.key, message: err.message, timed_out: err.timedOut === true };
        }
        step = nextStep(event);
      } else if (step.do === "use") {
        local.use(step.key);
        markOnce("edgesight:local-ready");
        for (const key of step.drop) local.drop(key);
        view.problem("local", "");
        step = nextStep({ event: "local_next" });
      } else if (step.do === "drop") {
        for (const key of step.keys) local.drop(key);
        step = nextStep({ event: "local_next" });
      } else {
        if (step.do === "fail") view.problem("local", step.message);
        return;
      }
    }
  }

  // -- the frame source: the camera until the user picks a file; Python says when to ask
  // for the camera (again), and what a failure means.
  const useCameraButton = $("use-camera");
  const reportSource = (state, kind, err) => handle({ event: "source", state, kind, error: (err && err.name) || "", playing: source.kind });
  async function startCamera() {
    reportSource("starting", "camera");
    try {
      const attempt = earlyCamera || source.useCamera().then(() => null, (err) => err || new Error("camera failed"));
      earlyCamera = null; // the request made while Python booted, used once
      const failure = await attempt;
      if (failure) throw failure;
      markOnce("edgesight:camera");
      reportSource("live", "camera");
    } catch (err) {
      reportSource("failed", "camera", err);
    }
  }
  async function playUrl(url) { // a kiosk's configured loop while its camera fails
    try {
      await source.useUrl(url);
      reportSource("live", "url");
    } catch (err) {
      console.warn(`kiosk: the configured source cannot be played: ${err.message}`);
    }
  }
  source.onended = () => reportSource("ended", "camera");
  async function useFile(file) {
    if (!file) return;
    reportSource("starting", "file");
    try {
      await source.useFile(file);
      reportSource("live", "file");
    } catch (err) {
      console.warn(`the chosen file cannot be played: ${err.message}`);
      reportSource("failed", "file", err);
    }
  }
  useCameraButton.addEventListener("click", () => handle({ event: "camera_wanted" }));
  wireFilePicking(useFile);

  handle({
    event: "start", webtransport: typeof WebTransport === "function",
    cross_origin_isolated: self.crossOriginIsolated === true,
    hardware_concurrency: navigator.hardwareConcurrency || 1, time_origin_ms: performance.timeOrigin,
  });
  supportedEncoders().then((names) => handle({ event: "encoders", names }));
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
