// Compressed frames (issue 9): the browser's own JPEG/WebP encoders do the pixel work.
// Python decides the format, the size and the quality (BrowserClient.plan_frame); this
// draws the frame at that size on a canvas (OffscreenCanvas where there is one) and hands
// back the encoded bytes. Pixels only, no decisions.

function makeCanvas() {
  return typeof OffscreenCanvas === "function" ? new OffscreenCanvas(1, 1) : document.createElement("canvas");
}

function toBlob(canvas, type, quality) {
  if (typeof canvas.convertToBlob === "function") return canvas.convertToBlob({ type, quality });
  return new Promise((resolve) => canvas.toBlob(resolve, type, quality));
}

export class FrameEncoder {
  constructor() {
    this.canvas = makeCanvas();
    this.context = this.canvas.getContext("2d", { alpha: false });
  }

  // The picture `element` (video or image) drawn at width x height, encoded as
  // `image/${format}` at `quality` (0..1): a Uint8Array.
  async encode(element, width, height, format, quality) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(element, 0, 0, width, height);
    const type = `image/${format}`;
    const blob = await toBlob(this.canvas, type, quality);
    if (!blob || blob.type !== type) throw new Error(`this browser cannot encode ${type}`);
    return new Uint8Array(await blob.arrayBuffer());
  }
}

// Which of "jpeg" and "webp" this browser encodes (a browser without a WebP encoder hands
// back a PNG instead), as the comma-separated list the page core's "encoders" event takes (docs/page-core.md).
export async function supportedEncoders() {
  const canvas = makeCanvas();
  canvas.width = canvas.height = 2;
  canvas.getContext("2d").fillRect(0, 0, 2, 2);
  const names = [];
  for (const format of ["jpeg", "webp"]) {
    try {
      const blob = await toBlob(canvas, `image/${format}`, 0.5);
      if (blob && blob.type === `image/${format}`) names.push(format);
    } catch (err) {
      // not supported here
    }
  }
  return names.join(",");
}
