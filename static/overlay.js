// Draws boxes (already in frame pixels, computed in Python) over the video.

const PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ff375f"];

export class Overlay {
  constructor(canvas, list) {
    this.canvas = canvas;
    this.list = list;
    this.context = canvas.getContext("2d");
  }

  resize(width, height) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
  }

  clear() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.list.replaceChildren(Object.assign(document.createElement("li"), {
      className: "empty", textContent: "Nothing detected yet.",
    }));
  }

  draw(boxes) {
    const ctx = this.context;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const lineWidth = Math.max(2, Math.round(this.canvas.width / 320));
    ctx.font = `${Math.max(12, lineWidth * 7)}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    const items = [];
    for (const box of boxes) {
      const color = PALETTE[box.class_id % PALETTE.length];
      const text = `${box.label} ${Math.round(box.score * 100)}%`;
      ctx.lineWidth = lineWidth;
      ctx.strokeStyle = color;
      ctx.strokeRect(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1);
      const metrics = ctx.measureText(text);
      const textHeight = lineWidth * 7 + 6;
      const y = box.y1 >= textHeight ? box.y1 - textHeight : box.y1;
      ctx.fillStyle = color;
      ctx.fillRect(box.x1, y, metrics.width + 8, textHeight);
      ctx.fillStyle = "#000";
      ctx.fillText(text, box.x1 + 4, y + 3);
      const item = document.createElement("li");
      item.textContent = text;
      item.dataset.label = box.label;
      items.push(item);
    }
    if (items.length) {
      this.list.replaceChildren(...items);
    } else {
      this.clear();
    }
  }
}
