// Main-thread side of local inference: fetches the model, lets Python check its sha256,
// and hands tensors to the worker. Pixels and bytes only; Python decides.

export class LocalEngine {
  constructor({ onoutput, onerror }) {
    this.worker = null;
    this.handlers = { onoutput, onerror };
  }

  // Resolves with { threads, warmupMs } once the worker's session is ready (warmupMs: a
  // timed run of a blank frame).
  // io: the model card's input/output names and input size (config.model.local.io).
  // sha256(Uint8Array) -> hex: used where crypto.subtle is missing (insecure contexts).
  async start({ ortUrl, modelUrl, threads, io, checkSha256, sha256 }) {
    const response = await fetch(modelUrl);
    if (!response.ok) throw new Error(`the model download failed: HTTP ${response.status}`);
    const model = await response.arrayBuffer();
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
    this.worker = new Worker(new URL("./local-worker.js", import.meta.url), { type: "module" });
    const ready = new Promise((resolve, reject) => {
      this.worker.onmessage = ({ data }) => {
        if (data.type === "ready") resolve({ threads: data.threads, warmupMs: data.warmupMs });
        else if (data.type === "failed") reject(new Error(data.message));
      };
      this.worker.onerror = (event) => reject(new Error(event.message || "the worker failed"));
    });
    this.worker.postMessage({ type: "init", ortUrl, model, threads, io }, [model]);
    const loaded = await ready;
    this.worker.onmessage = ({ data }) => {
      if (data.type === "output") this.handlers.onoutput(data);
      else if (data.type === "error") this.handlers.onerror(data);
    };
    this.worker.onerror = (event) => this.handlers.onerror({ id: null, message: event.message });
    return loaded;
  }

  run(id, tensor) {
    this.worker.postMessage({ type: "run", id, tensor }, [tensor.buffer]);
  }
}
