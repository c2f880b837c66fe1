// The page's public API, version 1 (docs/page-api.md): what tests and scripts on the page may
// rely on. Its shapes are built in Python (pyodide_client/page_api.py); this file hands them
// out: state() on demand, each drawn result as an "edgesight:detections" event, each server
// that accepts the stream as an "edgesight:server" event, and what the overlay drew.

export class PageApi {
  constructor(client, overlay) {
    this._client = client;
    this._overlay = overlay;
    this.version = 1;
    this.lastDetections = null;
    this.lastServer = null;
    this.drawn = { server: 0, browser: 0 }; // results drawn since the page loaded, by where
  }

  // What the page shows now: {version, detecting, where, badge, server, model, fps,
  // latency_ms, problem, browser_engine, browser_*, token_problem}.
  state() {
    return JSON.parse(this._client.api_state(performance.now()));
  }

  // What the overlay shows now, as drawn in CSS pixels (the overlay places the labels):
  // {frame: {width, height} | null, labels: [{text, label, score, box_css, x_css, y_css,
  // width_css, height_css, font_css_px}]}; no labels once the boxes are cleared.
  overlay() {
    return structuredClone(this._overlay.lastDrawn);
  }

  // A drawn result's public shape (the "api" entry of the page core's detections event),
  // stamped with when it was drawn: only the page sees that moment.
  published(detections, drawnMs) {
    const shown = { ...detections, drawn_ms: drawnMs };
    this.lastDetections = shown;
    this.drawn[shown.where] += 1;
    window.dispatchEvent(new CustomEvent("edgesight:detections", { detail: shown }));
  }

  // A server accepted the stream (the "api" entry of the page core's ready event).
  serverReady(server) {
    this.lastServer = server;
    window.dispatchEvent(new CustomEvent("edgesight:server", { detail: server }));
  }
}
