// Where frames come from: the camera, or a video or image file the user picked or dropped
// (looping). Pixels only, no decisions.

// What a failure means, and its words, are Python's (pyodide_client/page_source.py, view.py):
// the page hands it the error's name.

export class FrameSource {
  constructor(video, still) {
    this.video = video;
    this.still = still; // <img> for image files
    this.kind = "none";
    this.stream = null;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    this.onended = null;
    this.onframe = null;
    this.timer = null;
    this.objectUrl = null;
    this._watchVideo();
  }

  get ready() {
    if (this.kind === "image") return this.still.complete && this.still.naturalWidth > 0;
    return this.kind !== "none" && this.video.videoWidth > 0 && !this.video.paused;
  }

  get width() { return this.kind === "image" ? this.still.naturalWidth : this.video.videoWidth; }
  get height() { return this.kind === "image" ? this.still.naturalHeight : this.video.videoHeight; }

  _stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
    this.video.srcObject = null;
    this.video.removeAttribute("src");
    this.still.hidden = true;
    this.video.hidden = false;
    this.kind = "none";
  }

  async useCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw Object.assign(new Error("getUserMedia unavailable"), { name: "SecurityError" });
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
    });
    this._stop();
    this.stream = stream;
    this.kind = "camera";
    for (const track of stream.getVideoTracks()) {
      track.addEventListener("ended", () => this.kind === "camera" && this.onended && this.onended());
    }
    this.video.srcObject = stream;
    await this._playing();
  }

  async useFile(file) {
    this._stop();
    this.objectUrl = URL.createObjectURL(file);
    if (file.type.startsWith("image/")) {
      this.kind = "image";
      this.still.src = this.objectUrl;
      await this.still.decode();
      this.still.hidden = false;
      this.video.hidden = true;
      this.timer = setInterval(() => this.onframe && this.onframe(), 100);
    } else {
      this.kind = "file";
      this.video.loop = true;
      this.video.src = this.objectUrl;
      await this._playing();
    }
  }

  // A video or image the web app serves (a kiosk's configured loop).
  async useUrl(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const blob = await response.blob();
    await this.useFile(new File([blob], url.split("/").pop() || "source", { type: blob.type }));
  }

  async _playing() {
    await this.video.play();
    if (!this.video.videoWidth) {
      await new Promise((resolve) => this.video.addEventListener("loadedmetadata", resolve, { once: true }));
    }
  }

  // One callback per new video frame, whichever video is playing.
  _watchVideo() {
    const video = this.video;
    if (typeof video.requestVideoFrameCallback === "function") {
      const tick = () => {
        if (this.kind !== "image" && this.onframe) this.onframe();
        video.requestVideoFrameCallback(tick);
      };
      video.requestVideoFrameCallback(tick);
    } else {
      setInterval(() => this.kind !== "image" && this.onframe && this.onframe(), 33);
    }
  }

  // The element showing the current frame, for drawing it elsewhere (static/encoder.js).
  get element() { return this.kind === "image" ? this.still : this.video; }

  // RGBA pixels of the current frame.
  grab() {
    const { width, height } = this;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(this.kind === "image" ? this.still : this.video, 0, 0, width, height);
    return { data: this.context.getImageData(0, 0, width, height).data, width, height };
  }
}
