// Web Worker: runs the detector with onnxruntime-web (Wasm) off the main thread, so the
// video stays smooth. Moves tensors in and raw outputs out; post-processing is Python's.
// The input and output names and the input's width and height are the model card's (io).

let ort = null;
let session = null;
let io = null; // { input, width, height, boxes, scores } from model.json

async function init({ ortUrl, model, threads, io: modelIo }) {
  ort = await import(`${ortUrl}ort.wasm.min.mjs`);
  ort.env.wasm.wasmPaths = ortUrl;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  io = modelIo;
  session = await ort.InferenceSession.create(new Uint8Array(model), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  // The first run allocates and plans; pay for it before the first real frame. The second
  // is timed: the page's estimate of a frame here until real frames measure it (routing.py
  // compares it with the nodes' expected times when every node misses its objective).
  const blank = new Uint8Array(3 * io.width * io.height);
  await run(blank.slice());
  const started = performance.now();
  await run(blank);
  return performance.now() - started;
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
      self.postMessage({ type: "ready", threads: ort.env.wasm.numThreads, warmupMs });
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
  }
};
