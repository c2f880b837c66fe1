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

export async function bootPython(config, progress) {
  progress(5, "Loading the Python runtime (Pyodide, about 13 MB)…");
  let pyodide;
  try {
    const { loadPyodide } = await import(`${config.pyodide_url}pyodide.mjs`);
    pyodide = await loadPyodide({ indexURL: config.pyodide_url });
    performance.mark("edgesight:runtime");
  } catch (err) {
    throw new PythonLoadError(`the Python runtime did not start (${err.message || err})`);
  }
  progress(70, "Loading edgesight's Python client…");
  const archive = await (await fetchOk(config.client_zip_url, "the Python client")).arrayBuffer();
  pyodide.unpackArchive(archive, "zip", { extractDir: "/home/pyodide/edgesight" });
  pyodide.runPython("import sys; sys.path.insert(0, '/home/pyodide/edgesight')");
  progress(85, "Reading the model's description…");
  const card = await (await fetchOk(config.model.card_url, "the model description")).text();
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
