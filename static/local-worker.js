// Web Worker: runs the detector with onnxruntime-web off the main thread, so the video
// stays smooth, on WebAssembly (ort.wasm) or WebGPU (ort.webgpu, issue 20): the page says
// which (Python chose, pyodide_client/backend_choice.py). One worker, one backend, one
// thread count: a worker is its own context, so the page can time several side by side.
// Moves tensors in and raw outputs out; post-processing is Python's.
// The input and output names and the input's width and height are the model card's (io).

let ort = null;
let session = null;
let io = null; // { input, width, height, boxes, scores } from model.json
let device = null; // the GPUDevice onnxruntime-web runs on (WebGPU only)

async function init({ ortUrl, model, threads, io: modelIo, backend = "wasm", timedRuns = 1, sample = null }) {
  ort = await import(`${ortUrl}${backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  ort.env.wasm.wasmPaths = ortUrl;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  io = modelIo;
  session = await ort.InferenceSession.create(new Uint8Array(model), {
    executionProviders: [backend],
    graphOptimizationLevel: "all",
  });
  if (backend === "webgpu") watchDevice();
  // The first run allocates and plans (on WebGPU: compiles its shaders); pay for it before
  // the first real frame. The next ones are timed on a real camera frame when the page had
  // one: the page's estimate of a frame here, compared across backends and thread counts
  // (backend_choice.py) and with the nodes' times (routing.py) until real frames measure it.
  const frame = sample || new Uint8Array(3 * io.width * io.height);
  const first = performance.now();
  await run(frame.slice());
  const times = timedRuns > 0 ? [] : [performance.now() - first]; // 0: the first run's time
  for (let i = 0; i < timedRuns; i++) {
    const started = performance.now();
    await run(frame.slice());
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

// A lost device (driver reset, GPU unplugged, the browser reclaiming it) cannot run another
// frame: say so at once, so the page moves to Wasm before a frame waits on it.
function watchDevice() {
  device = ort.env.webgpu.device || null;
  if (!device || !device.lost) return;
  device.lost.then((info) => {
    self.postMessage({ type: "lost", message: `the GPU device was lost (${info.reason || "unknown"}${info.message ? `: ${info.message}` : ""})` });
  });
}

async function run(tensor) {
  const input = new ort.Tensor("uint8", tensor, [1, 3, io.height, io.width]);
  const outputs = await session.run({ [io.input]: input }, [io.boxes, io.scores]);
  return [own(outputs[io.boxes].data), own(outputs[io.scores].data)];
}

// A Float32Array whose buffer is its own, so it can be transferred without copying more.
function own(array) {
  return array.byteOffset === 0 && array.byteLength === array.buffer.byteLength ? array : array.slice();
}

self.onmessage = async ({ data }) => {
  if (data.type === "init") {
    try {
      const warmupMs = await init(data);
      self.postMessage({ type: "ready", threads: ort.env.wasm.numThreads, warmupMs, backend: data.backend || "wasm" });
    } catch (err) {
      self.postMessage({ type: "failed", message: String((err && err.message) || err) });
    }
  } else if (data.type === "run") {
    const started = performance.now();
    try {
      const [boxes, scores] = await run(data.tensor);
      self.postMessage(
        { type: "output", id: data.id, boxes, scores, ms: performance.now() - started },
        [boxes.buffer, scores.buffer],
      );
    } catch (err) {
      self.postMessage({ type: "error", id: data.id, message: String((err && err.message) || err) });
    }
  } else if (data.type === "lose-device") {
    // Test hook (playwright/test_webgpu.py): what a driver reset does to the device.
    if (device) device.destroy();
  }
};
