// The webcam page: boot Python, start the camera, stream frames to a node, draw results.
// Every decision (what to send, when to reconnect, what a message means) is made by the
// Python BrowserClient; this file wires browser APIs to it.

import { bootPython } from "./python.js";
import { Camera, cameraErrorText } from "./camera.js";
import { Overlay } from "./overlay.js";
import { NodeLink } from "./node-link.js";

const config = JSON.parse(document.getElementById("edgesight-config").textContent);
const ui = {
  video: document.getElementById("video"),
  overlay: document.getElementById("overlay"),
  loading: document.getElementById("loading"),
  progress: document.getElementById("progress"),
  progressText: document.getElementById("progress-text"),
  status: document.getElementById("status"),
  message: document.getElementById("message"),
  detections: document.getElementById("detections"),
};

function setProgress(percent, text) {
  ui.progress.value = percent;
  ui.progressText.textContent = text;
}

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = !text;
}

function nodeUrl(template) {
  return template.replace("{hostname}", location.hostname);
}

function describeStatus(status) {
  if (!status.connected) return `Not connected to a node. ${ui.status.dataset.retry || ""}`.trim();
  return [
    `${status.fps.toFixed(1)} fps`,
    `round trip ${Math.round(status.round_trip_ms)} ms`,
    `node ${status.node}`,
    `model ${status.model}`,
  ].join(" · ");
}

async function main() {
  let python;
  try {
    python = await bootPython(config, setProgress);
  } catch (err) {
    setProgress(0, "Could not start.");
    showMessage(`The page could not start its Python runtime: ${err.message}. Reload the page to try again.`);
    return;
  }
  const client = python.client;
  window.edgesight = { pyodide: python.pyodide, client, config };
  ui.loading.hidden = true;

  const overlay = new Overlay(ui.overlay, ui.detections);
  const camera = new Camera(ui.video);
  let haveNewFrame = false;
  let cameraReady = false;

  const link = new NodeLink({
    onopen: () => {},
    onmessage: (bytes) => {
      const events = JSON.parse(client.on_message(bytes, performance.now()));
      for (const event of events) {
        if (event.type === "ready") {
          ui.status.dataset.retry = "";
          if (!ui.message.dataset.camera) showMessage("");
        } else if (event.type === "detections") {
          overlay.draw(event.boxes);
        } else if (event.type === "error") {
          console.warn(`node refused a message: ${event.message}`);
        } else if (event.type === "fatal") {
          showMessage(`The node sent something this page cannot use: ${event.message}`);
          link.close();
        }
      }
      pump();
    },
    onclose: (code) => {
      const delayMs = client.on_close();
      overlay.clear();
      const reason = code === 1013 ? "The node is busy." : "Cannot reach the inference node.";
      ui.status.dataset.retry = `${reason} Retrying in ${(delayMs / 1000).toFixed(1)} s…`;
      ui.status.textContent = describeStatus(JSON.parse(client.status(performance.now())));
      setTimeout(connect, delayMs);
    },
  });

  function connect() {
    link.connect(nodeUrl(client.next_url()));
  }

  function pump() {
    if (!haveNewFrame || !cameraReady || !link.isOpen || !client.want_frame()) return;
    haveNewFrame = false;
    const captureMs = performance.now();
    const frame = camera.grab();
    overlay.resize(frame.width, frame.height);
    const message = client.encode_frame(frame.data, frame.width, frame.height, captureMs, performance.now());
    const buffer = message.getBuffer("u8");
    try {
      link.send(buffer.data);
    } finally {
      buffer.release();
      message.destroy();
    }
  }

  async function startCamera() {
    try {
      await camera.start();
      cameraReady = true;
      delete ui.message.dataset.camera;
      showMessage("");
    } catch (err) {
      cameraReady = false;
      ui.message.dataset.camera = "1";
      showMessage(cameraErrorText(err));
      if (err && err.name !== "NotAllowedError" && err.name !== "SecurityError") {
        setTimeout(startCamera, 2000);
      }
    }
  }

  camera.onended = () => {
    cameraReady = false;
    ui.message.dataset.camera = "1";
    showMessage("The camera stopped. Reconnect it; detection resumes by itself.");
    setTimeout(startCamera, 1000);
  };
  camera.onFrame(() => { haveNewFrame = true; pump(); });
  setInterval(() => {
    ui.status.textContent = describeStatus(JSON.parse(client.status(performance.now())));
  }, 500);

  connect();
  await startCamera();
}

main().catch((err) => {
  console.error(err);
  showMessage(`Something went wrong: ${err.message}. Reload the page to try again.`);
});
