// Boots Pyodide from the webapp (never a CDN) and loads edgesight's Python client into it.
// Returns the BrowserClient proxy that owns every decision about frames and nodes.

export class PythonLoadError extends Error {}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new PythonLoadError(`could not download ${what} (${err.message})`);
  }
  if (!response.ok) {
    throw new PythonLoadError(`could not download ${what}: HTTP ${response.status}`);
  }
  return response;
}

// Pyodide memory snapshots (issue 18): the first boot keeps the interpreter's memory right
// after edgesight's client is imported; the next boots restore it instead of starting
// Python and importing again. One snapshot is kept (the current runtime + client): its key
// is the SHA-256 of the client bundle, under the versioned runtime URL. This cache's name
// does not start with "edgesight-", which sw.js deletes on each deploy.
const SNAPSHOT_CACHE = "pyodide-snapshots";
const CLIENT_DIR = "/home/pyodide/edgesight";
const IMPORT_CLIENT = `import sys; sys.path.insert(0, '${CLIENT_DIR}'); import pyodide_client.browser`;

async function snapshotKey(config, archive) {
  if (!self.caches || !self.crypto || !crypto.subtle) return null; // an insecure origin
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", archive));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return new URL(`${config.pyodide_url}snapshot-${hex}`, location.href).href;
}

async function readSnapshot(key) {
  const cache = await caches.open(SNAPSHOT_CACHE);
  const response = await cache.match(key);
  return response ? new Uint8Array(await response.arrayBuffer()) : null;
}

async function keepSnapshot(key, bytes) {
  const cache = await caches.open(SNAPSHOT_CACHE);
  for (const request of await cache.keys()) if (request.url !== key) await cache.delete(request);
  await cache.put(key, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
}

async function startRuntime(config, snapshotting) {
  const { loadPyodide } = await import(`${config.pyodide_url}pyodide.mjs`);
  return loadPyodide({ indexURL: config.pyodide_url, ...snapshotting });
}

export async function bootPython(config, progress) {
  progress(5, "Loading the Python runtime (Pyodide, about 13 MB)…");
  // The client and the model card download while the runtime starts (issue 18).
  const archiveDownload = fetchOk(config.client_zip_url, "the Python client").then((r) => r.arrayBuffer());
  const cardDownload = fetchOk(config.model.card_url, "the model description").then((r) => r.text());
  archiveDownload.catch(() => {}); // awaited below; not "unhandled" if the runtime fails first
  cardDownload.catch(() => {});
  const archive = await archiveDownload;
  const key = await snapshotKey(config, archive).catch(() => null);
  const snapshot = key ? await readSnapshot(key).catch(() => null) : null;
  let pyodide;
  let restored = false;
  try {
    if (snapshot) {
      try {
        pyodide = await startRuntime(config, { _loadSnapshot: snapshot });
        restored = true;
      } catch (err) { // another build's or a damaged snapshot: forget it, start afresh
        console.warn(`the Python snapshot could not be restored: ${err.message || err}`);
        caches.open(SNAPSHOT_CACHE).then((cache) => cache.delete(key)).catch(() => {});
      }
    }
    if (!restored) pyodide = await startRuntime(config, { _makeSnapshot: key !== null });
    performance.mark("edgesight:runtime", { detail: { restored } });
  } catch (err) {
    throw new PythonLoadError(`the Python runtime did not start (${err.message || err})`);
  }
  progress(70, "Loading edgesight's Python client…");
  // The files too, when restored: the snapshot holds memory only, not the file system.
  pyodide.unpackArchive(archive, "zip", { extractDir: CLIENT_DIR });
  if (!restored) {
    pyodide.runPython(IMPORT_CLIENT);
    if (key !== null) {
      keepSnapshot(key, pyodide.makeMemorySnapshot())
        .catch((err) => console.warn(`the Python snapshot was not kept: ${err.message}`));
    }
  }
  progress(85, "Reading the model's description…");
  const card = await cardDownload;
  const browser = pyodide.pyimport("pyodide_client.browser");
  // Where the page runs: Python decides what an insecure or https origin may do.
  const page = {
    protocol: location.protocol, hostname: location.hostname, port: location.port,
    is_secure_context: self.isSecureContext === true,
  };
  const client = browser.BrowserClient(JSON.stringify({ ...config, page }), card);
  browser.destroy();
  performance.mark("edgesight:client");
  progress(100, "Ready.");
  return { pyodide, client };
}
