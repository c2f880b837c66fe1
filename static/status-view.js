// What the page says in words: loading progress, problems, the status line, the stats
// panel and the kiosk badge. Text only; the numbers come from Python.

const STAGE_LABELS = {
  preprocess: "preprocess (Python)", network: "network + send", queue: "node queue",
  decode: "decode (node)", inference: "inference", post: "post-process", draw: "draw", grab_to_drawn: "capture → drawn",
};

export class StatusView {
  constructor(elements) {
    this.el = elements;
    this.problems = new Map();
  }

  progress(percent, text) {
    this.el.progress.value = percent;
    this.el.progressText.textContent = text;
  }

  loaded() {
    this.el.loading.hidden = true;
  }

  // Keyed so that one source (camera, node, local, ...) can clear its own message.
  problem(key, text) {
    if (text) this.problems.set(key, text); else this.problems.delete(key);
    const message = [...this.problems.values()].join(" ");
    this.el.message.textContent = message;
    this.el.message.hidden = !message;
  }

  status(s) {
    let text;
    if (s.mode === "node") {
      text = `${s.fps.toFixed(1)} fps · ${Math.round(s.latency_ms)} ms grab to drawn · round trip ${Math.round(s.round_trip_ms)} ms · ${wireText(s.wire)} · node ${s.node} · model ${s.model}`;
    } else if (s.mode === "local") {
      const threads = `${s.threads} thread${s.threads === 1 ? "" : "s"}`;
      text = `${s.fps.toFixed(1)} fps · ${Math.round(s.latency_ms)} ms grab to drawn · local wasm, ${threads} · model ${s.model} · ${s.route || "no node yet"}`;
    } else {
      const local = s.local_state === "loading" ? " Loading local detection…" : "";
      text = `Not detecting yet. ${s.route}${local}`.trim();
    }
    this.el.status.textContent = text;
    this.el.status.dataset.mode = s.mode;
    if (this.el.badge) {
      const where = s.mode === "node" ? `node ${s.node}` : s.mode === "local" ? `local ×${s.threads}` : "offline";
      this.el.badge.textContent = `● ${where} · ${s.fps.toFixed(0)} fps`;
      this.el.badge.dataset.mode = s.mode;
    }
  }

  stats(stages, wire) {
    if (!this.el.stats) return;
    const rows = Object.entries(stages).map(([name, v]) => {
      const row = document.createElement("tr");
      for (const text of [STAGE_LABELS[name] || name, `${v.p50.toFixed(1)}`, `${v.p95.toFixed(1)}`]) {
        row.appendChild(Object.assign(document.createElement(row.children.length ? "td" : "th"), { textContent: text }));
      }
      return row;
    });
    if (wire) {
      const row = document.createElement("tr");
      row.className = "wire";
      row.appendChild(Object.assign(document.createElement("th"), { textContent: "frames on the wire" }));
      row.appendChild(Object.assign(document.createElement("td"), { textContent: wireText(wire), colSpan: 2, title: wire.note || "" }));
      rows.push(row);
    }
    this.el.stats.replaceChildren(...rows);
  }
}

// Issue 9: how frames travel, e.g. "jpeg 14.2 KB/frame 3.4 Mbit/s".
function wireText(wire) {
  if (!wire) return "";
  const kb = (wire.frame_bytes / 1000).toFixed(1);
  return `${wire.encoding} ${kb} KB/frame ${wire.mbit_s.toFixed(1)} Mbit/s`;
}
