// What the page says in words: loading progress, problems, the badge, the status line, the
// details and the Timings panel. Text only: Python's view (pyodide_client/view.py) writes
// every word and number.

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

  // view: {mode, badge: {kind, text}, line, details: [text], timings: [{label, p50, p95}]}
  render(view) {
    this.el.status.textContent = view.line;
    this.el.status.dataset.mode = view.mode;
    this.el.badge.textContent = view.badge.text;
    this.el.badge.dataset.kind = view.badge.kind;
    if (this.el.timingsNote) this.el.timingsNote.textContent = view.timings_note || "";
    if (this.el.details) {
      this.el.details.replaceChildren(...view.details.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    }
    if (this.el.stats) {
      const rows = view.timings.map((row) => {
        const tr = document.createElement("tr");
        tr.dataset.stage = row.stage;
        tr.append(
          Object.assign(document.createElement("th"), { textContent: row.label }),
          Object.assign(document.createElement("td"), { textContent: row.p50 }),
          Object.assign(document.createElement("td"), { textContent: row.p95 }),
        );
        return tr;
      });
      this.el.stats.replaceChildren(...rows);
    }
  }
}
