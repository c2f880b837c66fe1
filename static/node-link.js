// One WebSocket to an inference node. Moves bytes; the Python client decides what they mean.

export class NodeLink {
  constructor({ onopen, onmessage, onclose }) {
    this.socket = null;
    this.handlers = { onopen, onmessage, onclose };
  }

  connect(url) {
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => this.handlers.onopen(url);
    socket.onmessage = (event) => {
      if (this.socket === socket) this.handlers.onmessage(new Uint8Array(event.data));
    };
    // onerror is always followed by onclose; the close handler does the reporting.
    socket.onerror = () => {};
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.handlers.onclose(event.code, event.reason);
    };
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(bytes) {
    this.socket.send(bytes);
  }

  close() {
    if (this.socket) this.socket.close();
  }
}
