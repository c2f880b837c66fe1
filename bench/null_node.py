"""A node whose engine does nothing (``--engine null``): every frame is answered at once
with no detections. For benchmarks that measure the link and the frame path rather than
this machine's inference (bench/bandwidth.py, bench/lossy_link.py); the decoder, batcher,
connection policy and protocol are the product's own (the engine: tests/null_engine.py).
Never a product server.

    .venv/bin/python bench/null_node.py --port 8011 [--host 10.78.0.2]
        [--tls-cert cert.pem --tls-key key.pem]

Prints ``ready <port> <udp port>`` once it listens (port 0: the one chosen), the UDP port
being its WebTransport endpoint's (0: none), on the same host.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesight.serving import ServerThread  # noqa: E402
from edgesight.tls import server_context  # noqa: E402
from gpu_backend.app import create_app  # noqa: E402
from gpu_backend.settings import NodeSettings  # noqa: E402
from tests.null_engine import null_engine  # noqa: E402

MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-cert", type=Path, help="PEM chain: serve wss:// (with --tls-key)")
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument(
        "--no-answer-datagrams",
        action="store_true",
        help="WebTransport answers on their streams only (EDGESIGHT_WT_ANSWER_DATAGRAMS=0)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        help="frames a connection may have unanswered, and uploading at once over QUIC "
        "(EDGESIGHT_MAX_IN_FLIGHT, EDGESIGHT_WT_MAX_FRAME_STREAMS); default: the node's",
    )
    args = parser.parse_args()
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key: expected both or neither")
    context = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    # host: WebTransport binds the node's host too (UDP), not the default loopback
    settings = NodeSettings(
        host=args.host,
        port=args.port,
        model_path=MODEL,
        node_name="null-node",
        allow_anonymous=True,  # a bench node: no web app issues tokens for it
        tls_cert=args.tls_cert,  # WebTransport serves the same certificate
        tls_key=args.tls_key,
        wt_answer_datagrams=not args.no_answer_datagrams,
    )
    if args.max_in_flight is not None:
        settings = replace(
            settings, max_in_flight=args.max_in_flight, wt_max_frame_streams=args.max_in_flight
        )
    app = create_app(settings, engine_factory=null_engine)
    with ServerThread(
        app,
        host=args.host,
        port=args.port,
        max_message_bytes=settings.max_message_bytes,
        ssl_context=context,
    ) as server:
        node = app.state.node
        wt_port = node.webtransport.port if node.webtransport is not None else 0
        sys.stdout.write(f"ready {server.port} {wt_port}\n")
        sys.stdout.flush()
        threading.Event().wait()  # until the bench terminates this process


if __name__ == "__main__":
    main()
