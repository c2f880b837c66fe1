// Main-thread side of local inference: fetches the model, lets Python check its sha256,
// and hands tensors to the worker. Pixels and bytes only; Python decides.
//
// Workers are loaded under keys ("wasm-2", "webgpu-2": Python's, backend_choice.py); one
// of them runs the frames (use), another may wait beside it as a standby; drop ends one.
// start() is the one-worker path of before (one Wasm worker, used at once).

export class LocalEngine {
  // onlost({ key, message }): a worker's GPU device was lost (WebGPU).
  constructor({ onoutput, onerror, onlost = () => {} }) {
    this.worker = null; // the one running frames
    this.key = null;
    this.workers = new Map(); // key -> Worker
    this.models = new Map(); // url -> ArrayBuffer, checked
    this.handlers = { onoutput, onerror, onlost };
  }

  // Resolves with { threads, warmupMs } once the worker's session is ready (warmupMs: a
  // timed run of a blank frame).
  // io: the model card's input/output names and input size (config.model.local.io).
  // sha256(Uint8Array) -> hex: used where crypto.subtle is missing (insecure contexts).
  async start({ ortUrl, modelUrl, threads, io, checkSha256, sha256 }) {
    const model = await this.fetchModel({ modelUrl, checkSha256, sha256 });
    const loaded = await this.load("wasm", { backend: "wasm", ortUrl, model, threads, io });
    this.use("wasm");
    return loaded;
  }

  // The model file at modelUrl, once its sha256 passed Python's check (kept per URL).
  // idleMs > 0: a download that brings nothing for that long is abandoned (err.timedOut),
  // as a worker past its deadline is (issue 18); a slow one that keeps coming is not.
  async fetchModel({ modelUrl, checkSha256, sha256, idleMs = 0 }) {
    if (this.models.has(modelUrl)) return this.models.get(modelUrl);
    const model = await download(modelUrl, idleMs);
    let hex;
    if (self.crypto && crypto.subtle) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", model));
      hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    } else {
      hex = sha256(new Uint8Array(model));
    }
    const refusal = checkSha256(hex);
    if (refusal) {
      const err = new Error(refusal);
      err.refused = true;
      throw err;
    }
    this.models.set(modelUrl, model);
    return model;
  }

  // Starts a worker under `key` and resolves with { threads, warmupMs, backend } when its
  // session is ready and timed (timedRuns runs on `sample`, a letterboxed frame, or a blank
  // one). Not ready within budgetMs: the worker is ended and the promise rejects with
  // err.timedOut (issue 18: a worker that never answered left the page "loading").
  load(key, { backend, ortUrl, model, threads, io, timedRuns = 1, sample = null, budgetMs = 0 }) {
    this.drop(key);
    const worker = new Worker(new URL("./local-worker.js", import.meta.url), { type: "module" });
    this.workers.set(key, worker);
    return new Promise((resolve, reject) => {
      let timer = null;
      const fail = (err) => {
        clearTimeout(timer);
        this.drop(key);
        reject(err);
      };
      if (budgetMs > 0) {
        timer = setTimeout(() => {
          const err = new Error(`not ready within ${Math.round(budgetMs / 1000)} s`);
          err.timedOut = true;
          fail(err);
        }, budgetMs);
      }
      worker.onmessage = ({ data }) => {
        if (data.type === "ready") {
          clearTimeout(timer);
          this.listen(key, worker);
          resolve({ threads: data.threads, warmupMs: data.warmupMs, backend: data.backend });
        } else if (data.type === "failed") fail(new Error(data.message));
      };
      worker.onerror = (event) => fail(new Error(event.message || "the worker failed"));
      const copy = model.slice(0); // each worker gets its own; the page keeps the original
      const transfer = sample ? [copy, sample.buffer] : [copy];
      worker.postMessage({ type: "init", ortUrl, model: copy, threads, io, backend, timedRuns, sample }, transfer);
    });
  }

  listen(key, worker) {
    worker.onmessage = ({ data }) => {
      if (data.type === "lost") this.handlers.onlost({ key, message: data.message });
      else if (key !== this.key) return; // a standby's late answer
      else if (data.type === "output") this.handlers.onoutput({ ...data, key });
      else if (data.type === "error") this.handlers.onerror({ ...data, key });
    };
    worker.onerror = (event) => {
      if (key === this.key) this.handlers.onerror({ id: null, key, message: event.message });
    };
  }

  // Frames go to the worker under `key` from now on.
  use(key) {
    const worker = this.workers.get(key);
    if (!worker) throw new Error(`no in-browser engine ${key} is loaded`);
    this.worker = worker;
    this.key = key;
  }

  drop(key) {
    const worker = this.workers.get(key);
    if (!worker) return;
    worker.terminate();
    this.workers.delete(key);
    if (this.key === key) {
      this.worker = null;
      this.key = null;
    }
  }

  run(id, tensor) {
    this.worker.postMessage({ type: "run", id, tensor }, [tensor.buffer]);
  }

  // Test hook: the running worker destroys its GPU device, as a driver reset would.
  loseDevice() {
    if (this.worker) this.worker.postMessage({ type: "lose-device" });
  }
}

async function download(url, idleMs) {
  const controller = new AbortController();
  let timer = null;
  const arm = () => {
    clearTimeout(timer);
    if (idleMs > 0) timer = setTimeout(() => controller.abort(), idleMs);
  };
  try {
    arm();
    const response = await fetch(url, { signal: controller.signal });
    if (!response.ok) throw new Error(`the model download failed: HTTP ${response.status}`);
    const reader = response.body.getReader();
    const chunks = [];
    let size = 0;
    for (;;) {
      arm();
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    return bytes.buffer;
  } catch (err) {
    if (!controller.signal.aborted) throw err;
    const stalled = new Error(`the model download stalled (nothing for ${Math.round(idleMs / 1000)} s)`);
    stalled.timedOut = true;
    throw stalled;
  } finally {
    clearTimeout(timer);
  }
}
