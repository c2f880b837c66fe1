// The page's public API, version 1 (docs/page-api.md): what tests and scripts on the page may
// rely on. Both shapes are built in Python (pyodide_client/page_api.py); this file hands
// them out: state() on demand, and each drawn result as an "edgesight:detections" event.

export class PageApi {
  constructor(client) {
    this._client = client;
    this.version = 1;
    this.lastDetections = null;
    this.drawn = { server: 0, browser: 0 }; // results drawn since the page loaded, by where
  }

  // What the page shows now: {version, detecting, where, badge, server, model, fps, latency_ms,
  // problem, browser_engine}.
  state() {
    return JSON.parse(this._client.api_state(performance.now()));
  }

  // A drawn result's public shape (the "api" entry of the page core's detections event).
  published(detections) {
    this.lastDetections = detections;
    this.drawn[detections.where] += 1;
    window.dispatchEvent(new CustomEvent("edgesight:detections", { detail: detections }));
  }
}
