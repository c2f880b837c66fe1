// A WebSocket to an inference node: the page's link, a link joining or draining beside it,
// or a short-lived probe. Moves bytes; which socket is which, and what its messages mean,
// is Python's (pyodide_client/page_sockets.py): the page holds each under the id Python
// gave it.
//
// `new WebSocket(url)` throws on a URL the browser refuses (a bad port, a fragment, ...).
// Python refuses such URLs before they get here (pyodide_client/node_url.py), but a throw
// must still never escape: it would skip the rest of a reply's commands and, on a kiosk,
// reload the page (issue 8). A socket that cannot be created is reported as closed, after
// the caller has returned, as a real socket's failure would be.

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
  // guardMs > 0: closed (and reported closed) after that long whatever happens: a probe's
  // leak guard (Python gives up on an unanswered probe well before).
  constructor(url, { onopen = () => {}, onmessage, onclose, guardMs = 0 }) {
    this.onclose = onclose;
    this.guard = null;
    this.socket = socketTo(url);
    if (this.socket === null) {
      setTimeout(() => { if (this.onclose) this.onclose(CLOSE_ABNORMAL); }, 0);
      return;
    }
    if (guardMs > 0) this.guard = setTimeout(() => this.socket.close(), guardMs);
    this.socket.onopen = () => onopen();
    this.socket.onmessage = (event) => onmessage(new Uint8Array(event.data));
    // onerror is always followed by onclose; the close handler does the reporting.
    this.socket.onerror = () => {};
    this.socket.onclose = (event) => {
      clearTimeout(this.guard);
      if (this.onclose) this.onclose(event.code);
    };
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(bytes) {
    this.socket.send(bytes);
  }

  // Leave this socket for good (Python closed it): no more callbacks from it.
  abandon() {
    this.onclose = null;
    clearTimeout(this.guard);
    if (this.socket === null) return;
    this.socket.onopen = null;
    this.socket.onmessage = null;
    this.socket.onclose = null;
    this.socket.close();
  }
}
