// A WebTransport (QUIC) link to an inference node (issue 16), with the interface of
// NodeLink's WebSocket (isOpen, send, abandon; onmessage, onclose). Moves bytes only: the
// framing is pyodide_client/quic_framing.py's, and Python hands over its constants
// (which message types ride a stream of their own, the control prefix's size).
//
// - Control messages go on one bidirectional stream, each after its u32 little-endian
//   length; the page opens it and speaks first (Python's opening PING, via `onopen`).
// - Each frame goes on a unidirectional stream of its own. When a newer frame is sent, the
//   older frames still uploading are abandoned (their streams reset: latest frame wins
//   across the wire), all but the oldest, which is kept so that a slow link still delivers
//   frames; Python is told of each (`onabandon`) so the frame leaves its window. A frame
//   uploads until QUIC has taken its bytes (its write resolved), not until its close
//   resolves: Chromium resolves that when the FIN is acknowledged, a round trip later,
//   and resetting frames the node already had only wasted them (50 ms away: 13 of 30 fps).
// - Answers come on unidirectional streams of their own, one message each; a small one
//   also comes as a datagram, ahead of its stream. Both copies go to Python, which takes
//   the first (AnswerCopies in quic_framing.py).

const CLOSE_ABNORMAL = 1006; // what a link that never opened reports, as a WebSocket would

function fromHex(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(2 * i, 2), 16);
  return bytes;
}

function joined(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

export class WtLink {
  constructor(url, { hashes, constants, onopen, onmessage, onclose, onabandon }) {
    this.onmessage = onmessage;
    this.onclose = onclose;
    this.onabandon = onabandon;
    this.ownStream = new Set(constants.own_stream_types);
    this.prefixBytes = constants.control_prefix_bytes;
    this.control = null; // the control stream's writer, once open
    this.uploading = []; // frames still being written: {writer, head}
    this.isClosed = false;
    try {
      const options = hashes.length
        ? { serverCertificateHashes: hashes.map((hex) => ({ algorithm: "sha-256", value: fromHex(hex) })) }
        : {};
      this.transport = new WebTransport(url, options);
    } catch (err) {
      console.warn(`cannot open WebTransport to ${url}: ${err.message}`);
      this.transport = null;
      setTimeout(() => this._closed(CLOSE_ABNORMAL), 0);
      return;
    }
    this.transport.closed.then(
      (info) => this._closed(info && info.closeCode ? info.closeCode : 1000),
      () => this._closed(CLOSE_ABNORMAL),
    );
    this._start(onopen);
  }

  async _start(onopen) {
    try {
      await this.transport.ready;
      const stream = await this.transport.createBidirectionalStream();
      this.control = stream.writable.getWriter();
      this._readControl(stream.readable.getReader());
      this._readAnswers(this.transport.incomingUnidirectionalStreams.getReader());
      if (this.transport.datagrams) this._readDatagrams(this.transport.datagrams.readable.getReader());
      onopen();
    } catch (err) {
      this._closed(CLOSE_ABNORMAL); // refused, unreachable, a certificate it does not take
    }
  }

  get isOpen() {
    return this.control !== null && !this.isClosed;
  }

  send(bytes) {
    if (!this.isOpen) return;
    // Callers free their buffer when send() returns (as WebSocket.send copies): copy now.
    if (bytes.length > 3 && this.ownStream.has(bytes[3])) this._sendFrame(bytes.slice());
    else {
      const prefix = new Uint8Array(this.prefixBytes);
      new DataView(prefix.buffer).setUint32(0, bytes.length, true);
      this.control.write(joined(prefix, bytes)).catch(() => {});
    }
  }

  async _sendFrame(bytes) {
    // Latest frame wins, yet one always gets through: of the older frames still
    // uploading, the oldest (the furthest along) is kept and the others are reset. Resetting
    // every older frame starved a distant, lossy link, where no frame leaves within a frame
    // interval (docs/benchmarks.md (u)). An entry is listed before its stream exists, so
    // back-to-back frames see each other.
    const older = this.uploading.splice(0);
    const kept = older.shift();
    for (const old of older) {
      old.isSuperseded = true;
      if (old.writer) old.writer.abort().catch(() => {});
      if (this.onabandon) this.onabandon(old.head);
    }
    if (kept) this.uploading.push(kept);
    const entry = { writer: null, head: bytes.slice(0, 16), isSuperseded: false };
    this.uploading.push(entry);
    try {
      const stream = await this.transport.createUnidirectionalStream();
      entry.writer = stream.getWriter();
      if (entry.isSuperseded) {
        entry.writer.abort().catch(() => {});
        return;
      }
      await entry.writer.write(bytes);
      this.uploading = this.uploading.filter((e) => e !== entry); // taken: no longer reset
      await entry.writer.close();
    } catch (err) {
      // reset by a newer frame, or the session is gone (its close reports that)
    } finally {
      this.uploading = this.uploading.filter((e) => e !== entry);
    }
  }

  async _readControl(reader) {
    let buffered = new Uint8Array(0);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffered = joined(buffered, value);
        while (buffered.length >= this.prefixBytes) {
          const size = new DataView(buffered.buffer, buffered.byteOffset).getUint32(0, true);
          if (buffered.length < this.prefixBytes + size) break;
          const message = buffered.slice(this.prefixBytes, this.prefixBytes + size);
          buffered = buffered.slice(this.prefixBytes + size);
          if (this.isClosed) return;
          this.onmessage(message);
        }
      }
    } catch (err) {
      // the session closed: transport.closed reports it
    }
  }

  async _readAnswers(incoming) {
    try {
      for (;;) {
        const { value: stream, done } = await incoming.read();
        if (done) return;
        this._readAnswer(stream.getReader());
      }
    } catch (err) {
      // the session closed
    }
  }

  async _readAnswer(reader) {
    let message = new Uint8Array(0);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        message = joined(message, value);
      }
    } catch (err) {
      return; // the node reset it, or the session closed
    }
    if (!this.isClosed && message.length) this.onmessage(message);
  }

  async _readDatagrams(reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        if (!this.isClosed && value.length) this.onmessage(value);
      }
    } catch (err) {
      // the session closed
    }
  }

  _closed(code) {
    if (this.isClosed) return;
    this.isClosed = true;
    this.control = null;
    if (this.onclose) this.onclose(code);
  }

  // Leave this link for good (a switch, a stall): no more callbacks from it.
  abandon() {
    this.onclose = null;
    this.onmessage = () => {};
    this.onabandon = null;
    this.isClosed = true;
    if (this.transport) {
      try { this.transport.close(); } catch (err) { /* already closed */ }
    }
  }
}
