// Draws boxes (already in frame pixels, computed in Python) over the displayed picture,
// and the "In view" list (grouped by class in Python).
//
// The canvas has the size of the picture on screen in device pixels, not of the frame, so
// that labels are sized in CSS pixels whatever the camera resolution or the screen (a
// 640 px frame on a 390 px phone drew 7 px labels). Boxes are drawn lowest score first, so
// the best box and its label are always on top; a label goes above its box, else inside
// its top edge, else inside its bottom edge, else below it, wherever it covers neither a
// better box's label nor what sits on the picture (the badge, a kiosk's "in view" list).

const PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ff375f"];
export const LABEL_CSS_PX = 14;
export const KIOSK_LABEL_CSS_PX = 22;

export class Overlay {
  constructor(canvas, list, { labelCssPx = LABEL_CSS_PX, emptyText = "Nothing detected right now.", avoid = [] } = {}) {
    this.canvas = canvas;
    this.list = list;
    this.context = canvas.getContext("2d");
    this.labelCssPx = labelCssPx;
    this.emptyText = emptyText;
    this.avoid = avoid; // elements over the picture that labels must not hide under
    this.expiry = null;
    this.lastDrawn = { labels: [], frame: null }; // what tests and screenshots check
  }

  // Match the canvas to its size on screen; returns the device-pixel ratio used.
  _fit() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const height = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    return dpr;
  }

  clear() {
    clearTimeout(this.expiry);
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.lastDrawn = { labels: [], frame: null };
    if (this.list) {
      this.list.replaceChildren(Object.assign(document.createElement("li"), {
        className: "empty", textContent: this.emptyText,
      }));
    }
  }

  // boxes: best first, in frame pixels; frame: {width, height}; inView: [{text, label,
  // count}]; expiresMs: clear the boxes if nothing newer is drawn by then.
  draw(boxes, frame, inView, expiresMs) {
    const dpr = this._fit();
    const ctx = this.context;
    const { width: cw, height: ch } = this.canvas;
    ctx.clearRect(0, 0, cw, ch);
    // The picture is shown with object-fit: contain: the same scale and offsets here.
    const scale = Math.min(cw / frame.width, ch / frame.height);
    const left = (cw - frame.width * scale) / 2;
    const top = (ch - frame.height * scale) / 2;
    // At least labelCssPx; larger on a large picture, where 14 px labels look lost.
    const fontPx = Math.round(Math.max(this.labelCssPx, Math.min(26, this.canvas.clientWidth / 75)) * dpr);
    const pad = Math.round(fontPx * 0.3);
    const labelHeight = Math.round(fontPx * 1.3);
    const lineWidth = Math.max(2, Math.round(2 * dpr));
    ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
    ctx.textBaseline = "top";

    const ordered = [...boxes].sort((a, b) => b.score - a.score);
    const placed = this._obstacles(dpr); // label rectangles of better boxes, and the badge
    const items = ordered.map((box) => {
      const x1 = left + box.x1 * scale, y1 = top + box.y1 * scale;
      const x2 = left + box.x2 * scale, y2 = top + box.y2 * scale;
      const text = `${box.label} ${Math.round(box.score * 100)}%`;
      const width = Math.ceil(ctx.measureText(text).width) + 2 * pad;
      const x = Math.min(Math.max(0, x1), Math.max(0, cw - width));
      const options = [y1 - labelHeight, y1 + lineWidth, y2 - labelHeight - lineWidth, y2];
      const fits = (y) => y >= 0 && y + labelHeight <= ch;
      const free = (y) => placed.every((r) => x + width <= r.x || r.x + r.width <= x || y + labelHeight <= r.y || r.y + r.height <= y);
      const y = options.find((o) => fits(o) && free(o)) ?? options.find(fits) ?? Math.max(0, Math.min(y1, ch - labelHeight));
      const label = { x, y, width, height: labelHeight };
      placed.push(label);
      return { box, x1, y1, x2, y2, text, label, color: PALETTE[box.class_id % PALETTE.length] };
    });

    const lowestFirst = [...items].reverse();
    ctx.lineWidth = lineWidth;
    for (const item of lowestFirst) {
      ctx.strokeStyle = item.color;
      ctx.strokeRect(item.x1, item.y1, item.x2 - item.x1, item.y2 - item.y1);
    }
    for (const item of lowestFirst) {
      const { x, y, width, height } = item.label;
      ctx.fillStyle = item.color;
      ctx.fillRect(x, y, width, height);
      ctx.fillStyle = "#000";
      ctx.fillText(item.text, x + pad, y + Math.round((height - fontPx) / 2));
    }
    this.lastDrawn = {
      frame: { width: frame.width, height: frame.height },
      labels: items.map((item) => ({
        text: item.text, label: item.box.label, score: item.box.score,
        x_css: item.label.x / dpr, y_css: item.label.y / dpr,
        width_css: item.label.width / dpr, height_css: item.label.height / dpr,
        font_css_px: fontPx / dpr,
        box_css: [item.x1 / dpr, item.y1 / dpr, item.x2 / dpr, item.y2 / dpr],
      })),
    };
    this._list(inView);
    clearTimeout(this.expiry);
    if (expiresMs) this.expiry = setTimeout(() => this.clear(), expiresMs);
  }

  // Where the elements over the picture are, in canvas pixels.
  _obstacles(dpr) {
    const origin = this.canvas.getBoundingClientRect();
    return this.avoid
      .filter((element) => element && element.getClientRects().length > 0)
      .map((element) => {
        const r = element.getBoundingClientRect();
        return { x: (r.left - origin.left) * dpr, y: (r.top - origin.top) * dpr, width: r.width * dpr, height: r.height * dpr };
      });
  }

  _list(inView) {
    if (!this.list) return;
    if (!inView || !inView.length) {
      this.clear();
      return;
    }
    this.list.replaceChildren(...inView.map((group) => {
      const item = document.createElement("li");
      item.textContent = group.text;
      item.dataset.label = group.label;
      item.dataset.count = String(group.count);
      return item;
    }));
  }
}
