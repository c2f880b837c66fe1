// Camera capture and frame grabbing: pixels only, no decisions.

const CAMERA_ERRORS = {
  NotAllowedError: "Camera access was denied. Allow the camera for this site in the browser's settings, then reload the page.",
  SecurityError: "The browser blocked the camera on this page. Open it over https or from localhost.",
  NotFoundError: "No camera was found. Connect a camera; detection starts when one appears.",
  OverconstrainedError: "The camera cannot deliver a usable picture size.",
  NotReadableError: "The camera is in use by another program or could not start. Close other programs using it; we will keep trying.",
  AbortError: "The camera stopped while starting. We will keep trying.",
};

export function cameraErrorText(err) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser cannot use a camera here (it needs https or localhost).";
  }
  return CAMERA_ERRORS[err && err.name] || `The camera could not start (${err && err.message}).`;
}

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    this.onended = null;
  }

  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("getUserMedia unavailable");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
    });
    for (const track of this.stream.getVideoTracks()) {
      track.addEventListener("ended", () => this.onended && this.onended());
    }
    this.video.srcObject = this.stream;
    await this.video.play();
    if (!this.video.videoWidth) {
      await new Promise((resolve) => this.video.addEventListener("loadedmetadata", resolve, { once: true }));
    }
  }

  get width() { return this.video.videoWidth; }
  get height() { return this.video.videoHeight; }

  // RGBA pixels of the current video frame.
  grab() {
    const { width, height } = this;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(this.video, 0, 0, width, height);
    return { data: this.context.getImageData(0, 0, width, height).data, width, height };
  }

  // Calls fn once per new video frame.
  onFrame(fn) {
    const video = this.video;
    if (typeof video.requestVideoFrameCallback === "function") {
      const tick = () => { fn(); video.requestVideoFrameCallback(tick); };
      video.requestVideoFrameCallback(tick);
    } else {
      setInterval(fn, 33);
    }
  }
}
