// WebSockets to inference nodes: the page's stream to its node, and short-lived probes to
// candidates. Moves bytes; the Python client decides what they mean.
//
// `new WebSocket(url)` throws on a URL the browser refuses (a bad port, a fragment, ...).
// Python refuses such URLs before they get here (pyodide_client/node_url.py), but a throw
// must still never escape: it would skip the rest of the tick and, on a kiosk, reload the
// page (issue 8). A socket that cannot be created is reported as a failed connect or probe,
// after the caller has returned, as a real socket's failure would be.

function socketTo(url) {
  try {
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    return socket;
  } catch (err) {
    console.warn(`cannot open a WebSocket to ${url}: ${err.message}`);
    return null;
  }
}

const CLOSE_ABNORMAL = 1006; // what a socket that never opened reports

export class NodeLink {
  constructor(url, { onmessage, onclose }) {
    this.socket = socketTo(url);
    if (this.socket === null) {
      this.onclose = onclose;
      setTimeout(() => { if (this.onclose) this.onclose(CLOSE_ABNORMAL); }, 0);
      return;
    }
    this.socket.onmessage = (event) => onmessage(new Uint8Array(event.data));
    // onerror is always followed by onclose; the close handler does the reporting.
    this.socket.onerror = () => {};
    this.socket.onclose = (event) => onclose(event.code);
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(bytes) {
    this.socket.send(bytes);
  }

  // Leave this socket for good (a switch, a stalled node): no more callbacks from it.
  abandon() {
    this.onclose = null;
    if (this.socket === null) return;
    this.socket.onmessage = null;
    this.socket.onclose = null;
    this.socket.close();
  }
}

// Opens a socket, lets `onmessage` answer each message (an empty answer ends the probe),
// and calls `onfail` if it closes before that.
export function probe(url, { onmessage, onfail }) {
  const socket = socketTo(url);
  if (socket === null) {
    setTimeout(onfail, 0);
    return;
  }
  let done = false;
  const finish = () => { done = true; clearTimeout(guard); socket.close(); };
  const guard = setTimeout(() => socket.close(), 10_000); // leak guard; Python times out first
  socket.onerror = () => {};
  socket.onmessage = (event) => {
    if (done) return;
    const reply = onmessage(new Uint8Array(event.data));
    if (reply && reply.length) socket.send(reply); else finish();
  };
  socket.onclose = () => { if (!done) { done = true; clearTimeout(guard); onfail(); } };
}
