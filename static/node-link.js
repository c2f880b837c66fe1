// WebSockets to inference nodes: the page's stream to its node, and short-lived probes to
// candidates. Moves bytes; the Python client decides what they mean.

function socketTo(url) {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  return socket;
}

export class NodeLink {
  constructor(url, { onmessage, onclose }) {
    this.socket = socketTo(url);
    this.socket.onmessage = (event) => onmessage(new Uint8Array(event.data));
    // onerror is always followed by onclose; the close handler does the reporting.
    this.socket.onerror = () => {};
    this.socket.onclose = (event) => onclose(event.code);
  }

  get isOpen() {
    return this.socket.readyState === WebSocket.OPEN;
  }

  send(bytes) {
    this.socket.send(bytes);
  }

  // Leave this socket for good (a switch, a stalled node): no more callbacks from it.
  abandon() {
    this.socket.onmessage = null;
    this.socket.onclose = null;
    this.socket.close();
  }
}

// Opens a socket, lets `onmessage` answer each message (an empty answer ends the probe),
// and calls `onfail` if it closes before that.
export function probe(url, { onmessage, onfail }) {
  const socket = socketTo(url);
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
