"""Node settings, read once from a mapping (the environment or CLI-built) and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyodide_client.node_url import node_url_problem

from . import NodeError
from .loopback import LOOPBACK_HOSTS, is_loopback_host
from .node_credential import credential_node_id
from .origins import OriginPolicy, default_origins, is_origin_pattern
from .setting_values import BOOLEAN_EXPECTED, parse_boolean

__all__ = ["DEFAULT_MODEL_PATH", "NodeSettings", "SettingsError"]

DEFAULT_MODEL_PATH = (
    Path(__file__).resolve().parents[1] / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"
)
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


class SettingsError(NodeError, ValueError):
    """A setting with a value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class NodeSettings:
    host: str = "127.0.0.1"
    port: int = 8001
    model_path: Path = DEFAULT_MODEL_PATH
    node_name: str = "local-cpu"
    provider: str = "auto"  # auto: CUDA when onnxruntime offers it, else CPU
    device_id: int = 0  # CUDA device index for the CUDA provider
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per core)
    max_batch_size: int = 8
    max_batch_wait_ms: float = 2.0
    # frames a client may have unanswered on one connection: a page 100 ms away needs 4 at
    # 30 fps (issue 16; pyodide_client/inflight.py), a near one keeps 1
    max_in_flight: int = 4
    max_streams: int = 32  # open streams; more are refused with OVERLOADED
    max_message_bytes: int = 4 * 1024 * 1024  # larger WebSocket messages close with 1009
    # Who may use the node and what one client may cost it (issue 8), see connection.py.
    allowed_origins: tuple[str, ...] = ()  # empty: origins.default_origins(registry_url)
    max_streams_per_identity: int = 8  # streams one token identity may hold
    max_streams_per_address: int = 16  # streams one client address may hold
    handshake_timeout_s: float = 10.0  # sockets without AUTH (or a frame) are closed
    idle_timeout_s: float = 30.0  # streams that send no frame are closed
    max_refused_messages: int = 20  # refused messages before the connection is closed
    max_outbox_bytes: int = 1024 * 1024  # unsent bytes per connection before SLOW_READER
    # Threads decoding compressed (IMAGE) frames, beside the one inference thread (issue 9)
    decode_threads: int = 2
    # A JPEG of more scans is refused before decoding (issue 17: 170,000 tiny progressive
    # scans cost 3.6 s of CPU); baseline JPEGs have 1 (or 3), libjpeg's progressive 10.
    max_jpeg_scans: int = 32
    max_messages_per_s: float = 100.0  # per connection, beyond a one-second burst: closed
    max_connections_per_address: int = 128  # open TCP connections per client address
    header_timeout_s: float = 10.0  # HTTP request headers must arrive within this
    close_timeout_s: float = 5.0  # a closed client's answer is awaited this long, then cut
    # An HTTP request body must be whole within this (from its headers) and never come
    # slower than this rate, judged over each second the server reads (issue 17).
    body_timeout_s: float = 10.0
    min_body_rate_bytes_per_s: float = 512.0
    score_threshold: float = 0.35
    iou_threshold: float = 0.6
    # Another class's box overlapping a better one by more than this is dropped (issue 18)
    cross_class_iou_threshold: float = 0.7
    max_detections: int = 100
    # Node registry (issue 4): with registry_url (the web app, http[s]://host:port) and the
    # node's credential set, the node heartbeats its address and load there, see
    # heartbeat.py. node_credential (issue 17): the line `edgesight enrol NODE_ID` printed;
    # the node registers as that id only, and accepts only tokens for that id.
    # registry_secret: legacy, the one secret every node shared (any node could write any
    # entry); used only without a credential.
    registry_url: str = ""
    node_credential: str = field(default="", repr=False)
    registry_secret: str = field(default="", repr=False)
    public_url: str = ""  # the ws[s]:// URL browsers use; empty: ws://{host}:{port}/ws
    site: str = ""  # a location label shown to users ("lab-2", "eu-west")
    node_id: str = ""  # unique in the cluster; empty: {hostname}-{port}
    # Observability (issue 12): /metrics needs "Authorization: Bearer <token>" when set.
    metrics_token: str = field(default="", repr=False)
    # The latency objective: node time p95 over the last sla_window_s, published in heartbeats.
    sla_p95_ms: float = 30.0
    sla_window_s: float = 30.0
    # Traces (issue 12): OTLP/HTTP collector base URL; empty: no tracing, no cost.
    otlp_endpoint: str = ""
    # TLS (issue 8): serve WSS with this PEM certificate chain and key (both or neither;
    # reloaded when the files change), and verify an https registry with ca_file (None:
    # the system's trust store).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_file: Path | None = None
    # Stream tokens (issue 8, tokens.py): the web app's public key (a PEM file; empty:
    # fetched from the registry at start when one is configured), the cluster name tokens
    # are issued for, and whether clients without a token may stream (None: see
    # is_anonymous_allowed).
    token_public_key: str = ""
    cluster_name: str = "edgesight"
    allow_anonymous: bool | None = None
    # WebTransport (QUIC, HTTP/3) beside /ws (issue 16, wt_server.py): on a UDP port of its
    # own, bound to ``host`` like the node. wt_port 0: the node's port number when that is
    # fixed, else any free one. Without tls_cert/tls_key the node makes a self-signed
    # ECDSA certificate valid wt_cert_validity_days (at most 14, the browsers' limit for
    # serverCertificateHashes) and makes a new one halfway through.
    is_webtransport_enabled: bool = True
    wt_port: int = 0
    wt_max_sessions: int = 256  # QUIC connections at once; more are closed at once
    wt_max_frame_streams: int = 4  # frames uploading at once per session; more stop the oldest
    # Small answers (RESULT, DROPPED) also as a QUIC datagram, ahead of their stream: a lost
    # answer packet then costs no probe timeout (pyodide_client/quic_framing.py).
    wt_answer_datagrams: bool = True
    wt_cert_validity_days: float = 10.0
    # A certificate for WebTransport alone (PEM, both or neither), e.g. one from
    # `edgesight certs --webtransport`: its hash is announced when browsers may pin it.
    # Default: tls_cert/tls_key when given, else the node's own rotating one.
    wt_cert: Path | None = None
    wt_key: Path | None = None

    ENV = {
        "host": "EDGESIGHT_NODE_HOST",
        "port": "EDGESIGHT_NODE_PORT",
        "model_path": "EDGESIGHT_MODEL",
        "node_name": "EDGESIGHT_NODE_NAME",
        "provider": "EDGESIGHT_PROVIDER",
        "device_id": "EDGESIGHT_DEVICE",
        "intra_op_threads": "EDGESIGHT_INTRA_OP_THREADS",
        "max_batch_size": "EDGESIGHT_MAX_BATCH_SIZE",
        "max_batch_wait_ms": "EDGESIGHT_MAX_BATCH_WAIT_MS",
        "max_in_flight": "EDGESIGHT_MAX_IN_FLIGHT",
        "max_streams": "EDGESIGHT_MAX_STREAMS",
        "max_message_bytes": "EDGESIGHT_MAX_MESSAGE_BYTES",
        "allowed_origins": "EDGESIGHT_ALLOWED_ORIGINS",
        "max_streams_per_identity": "EDGESIGHT_MAX_STREAMS_PER_IDENTITY",
        "max_streams_per_address": "EDGESIGHT_MAX_STREAMS_PER_ADDRESS",
        "handshake_timeout_s": "EDGESIGHT_HANDSHAKE_TIMEOUT_S",
        "idle_timeout_s": "EDGESIGHT_IDLE_TIMEOUT_S",
        "max_refused_messages": "EDGESIGHT_MAX_REFUSED_MESSAGES",
        "max_outbox_bytes": "EDGESIGHT_MAX_OUTBOX_BYTES",
        "decode_threads": "EDGESIGHT_DECODE_THREADS",
        "max_jpeg_scans": "EDGESIGHT_MAX_JPEG_SCANS",
        "max_messages_per_s": "EDGESIGHT_MAX_MESSAGES_PER_S",
        "max_connections_per_address": "EDGESIGHT_MAX_CONNECTIONS_PER_ADDRESS",
        "header_timeout_s": "EDGESIGHT_HEADER_TIMEOUT_S",
        "close_timeout_s": "EDGESIGHT_CLOSE_TIMEOUT_S",
        "body_timeout_s": "EDGESIGHT_BODY_TIMEOUT_S",
        "min_body_rate_bytes_per_s": "EDGESIGHT_MIN_BODY_RATE_BYTES_PER_S",
        "score_threshold": "EDGESIGHT_SCORE_THRESHOLD",
        "iou_threshold": "EDGESIGHT_IOU_THRESHOLD",
        "cross_class_iou_threshold": "EDGESIGHT_CROSS_CLASS_IOU_THRESHOLD",
        "max_detections": "EDGESIGHT_MAX_DETECTIONS",
        "registry_url": "EDGESIGHT_REGISTRY_URL",
        "node_credential": "EDGESIGHT_NODE_CREDENTIAL",
        "registry_secret": "EDGESIGHT_REGISTRY_SECRET",
        "public_url": "EDGESIGHT_PUBLIC_URL",
        "site": "EDGESIGHT_SITE",
        "node_id": "EDGESIGHT_NODE_ID",
        "metrics_token": "EDGESIGHT_METRICS_TOKEN",
        "sla_p95_ms": "EDGESIGHT_SLA_P95_MS",
        "sla_window_s": "EDGESIGHT_SLA_WINDOW_S",
        "is_webtransport_enabled": "EDGESIGHT_WEBTRANSPORT",
        "wt_port": "EDGESIGHT_WT_PORT",
        "wt_max_sessions": "EDGESIGHT_WT_MAX_SESSIONS",
        "wt_max_frame_streams": "EDGESIGHT_WT_MAX_FRAME_STREAMS",
        "wt_answer_datagrams": "EDGESIGHT_WT_ANSWER_DATAGRAMS",
        "wt_cert_validity_days": "EDGESIGHT_WT_CERT_VALIDITY_DAYS",
        "wt_cert": "EDGESIGHT_WT_CERT",
        "wt_key": "EDGESIGHT_WT_KEY",
        "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",  # the OpenTelemetry SDK's own name
        "tls_cert": "EDGESIGHT_TLS_CERT",
        "tls_key": "EDGESIGHT_TLS_KEY",
        "ca_file": "EDGESIGHT_CA_FILE",
        "token_public_key": "EDGESIGHT_TOKEN_PUBLIC_KEY",
        "cluster_name": "EDGESIGHT_CLUSTER",
        "allow_anonymous": "EDGESIGHT_ALLOW_ANONYMOUS",
    }
    OPTIONAL_PATHS = ("tls_cert", "tls_key", "ca_file", "wt_cert", "wt_key")

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "port", self.port, "an integer from 0 to 65535")
        _check(self.provider in PROVIDER_CHOICES, "provider", self.provider, "auto, cpu or cuda")
        _check(self.device_id >= 0, "device_id", self.device_id, "a non-negative integer")
        _check(self.intra_op_threads >= 0, "intra_op_threads", self.intra_op_threads, ">= 0")
        _check(1 <= self.max_batch_size <= 256, "max_batch_size", self.max_batch_size, "1..256")
        _check(
            0 <= self.max_batch_wait_ms <= 1000,
            "max_batch_wait_ms",
            self.max_batch_wait_ms,
            "0..1000 ms",
        )
        _check(1 <= self.max_in_flight <= 64, "max_in_flight", self.max_in_flight, "1..64")
        _check(self.max_streams >= 1, "max_streams", self.max_streams, ">= 1")
        _check(
            self.max_message_bytes >= 1024, "max_message_bytes", self.max_message_bytes, ">= 1024"
        )
        for name in ("max_streams_per_identity", "max_streams_per_address"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        _check(
            1 <= self.max_messages_per_s <= 100_000,
            "max_messages_per_s",
            self.max_messages_per_s,
            "1..100000",
        )
        for name in (
            "handshake_timeout_s",
            "idle_timeout_s",
            "header_timeout_s",
            "close_timeout_s",
            "body_timeout_s",
        ):
            _check(0 < getattr(self, name) <= 3600, name, getattr(self, name), "(0, 3600] s")
        _check(
            self.max_refused_messages >= 0,
            "max_refused_messages",
            self.max_refused_messages,
            ">= 0",
        )
        _check(self.max_outbox_bytes >= 4096, "max_outbox_bytes", self.max_outbox_bytes, ">= 4096")
        _check(1 <= self.decode_threads <= 64, "decode_threads", self.decode_threads, "1..64")
        _check(1 <= self.max_jpeg_scans <= 1000, "max_jpeg_scans", self.max_jpeg_scans, "1..1000")
        _check(
            self.min_body_rate_bytes_per_s >= 0,
            "min_body_rate_bytes_per_s",
            self.min_body_rate_bytes_per_s,
            ">= 0 (0: no minimum)",
        )
        _check(
            self.max_connections_per_address >= 1,
            "max_connections_per_address",
            self.max_connections_per_address,
            ">= 1",
        )
        for entry in self.allowed_origins:
            _check(
                is_origin_pattern(entry),
                "allowed_origins",
                entry,
                "comma-separated origins like https://host:port (host or port may be *), or *",
            )
        _check(0 < self.score_threshold <= 1, "score_threshold", self.score_threshold, "(0, 1]")
        _check(0 < self.iou_threshold <= 1, "iou_threshold", self.iou_threshold, "(0, 1]")
        _check(
            0 < self.cross_class_iou_threshold <= 1,
            "cross_class_iou_threshold",
            self.cross_class_iou_threshold,
            "(0, 1]",
        )
        _check(self.max_detections >= 1, "max_detections", self.max_detections, ">= 1")
        _check(bool(self.node_name.strip()), "node_name", self.node_name, "a non-empty name")
        _check(0 < self.sla_p95_ms <= 60_000, "sla_p95_ms", self.sla_p95_ms, "0 < ms <= 60000")
        _check(0 < self.sla_window_s <= 3600, "sla_window_s", self.sla_window_s, "0 < s <= 3600")
        _check(
            not self.otlp_endpoint or self.otlp_endpoint.startswith(("http://", "https://")),
            "otlp_endpoint",
            self.otlp_endpoint,
            "an http:// or https:// collector URL",
        )
        _check(bool(self.cluster_name.strip()), "cluster_name", self.cluster_name, "a name")
        _check(0 <= self.wt_port <= 65535, "wt_port", self.wt_port, "a UDP port 0..65535")
        _check(
            1 <= self.wt_max_sessions <= 100_000,
            "wt_max_sessions",
            self.wt_max_sessions,
            "1..100000",
        )
        _check(
            1 <= self.wt_max_frame_streams <= 64,
            "wt_max_frame_streams",
            self.wt_max_frame_streams,
            "1..64",
        )
        _check(
            0 < self.wt_cert_validity_days <= 13.9,
            "wt_cert_validity_days",
            self.wt_cert_validity_days,
            "(0, 13.9] days (browsers take hashed certificates valid at most 14 days)",
        )
        _check_registry(self)
        _check_tls(self)

    @property
    def is_tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def is_anonymous_allowed(self) -> bool:
        """Explicit when set; else only on loopback, and not where a public key file was
        given (whoever gives one means tokens). A key fetched from the registry by a
        loopback node checks the tokens that come without refusing clients with none."""
        if self.allow_anonymous is not None:
            return self.allow_anonymous
        return self.host in LOOPBACK_HOSTS and not self.token_public_key

    @property
    def is_loopback(self) -> bool:
        """Bound where only this machine can connect."""
        return is_loopback_host(self.host)

    @property
    def origin_policy(self) -> OriginPolicy:
        return OriginPolicy(self.allowed_origins or default_origins(self.registry_url))

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> NodeSettings:
        """Settings from EDGESIGHT_* variables, then ``overrides`` (CLI flags) on top;
        an override of None means 'not given'."""
        values: dict[str, Any] = {}
        for name, key in cls.ENV.items():
            if key in environ:
                values[name] = _convert(cls, name, environ[key], key)
        settings = cls(**values)
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings


def _convert(cls: type[NodeSettings], name: str, raw: str, key: str) -> Any:
    if name in cls.OPTIONAL_PATHS:
        return Path(raw).expanduser() if raw else None
    default = getattr(cls, name)
    if isinstance(default, bool) or name == "allow_anonymous":
        return _boolean(key, raw)
    try:
        if isinstance(default, tuple):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw).expanduser()
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(default), "a value")
        raise SettingsError(f"{key}: expected {kind}, got {raw!r}") from None
    return raw


def _boolean(key: str, raw: str) -> bool:
    try:
        return parse_boolean(raw)
    except ValueError:
        raise SettingsError(f"{key}: expected {BOOLEAN_EXPECTED}, got {raw!r}") from None


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        key = NodeSettings.ENV.get(name, name)
        raise SettingsError(f"{key} ({name}): expected {expected}, got {value!r}")


def _check_credential(s: NodeSettings) -> None:
    if not s.node_credential:
        return
    enrolled_as = credential_node_id(s.node_credential)
    if enrolled_as is None:  # the value itself is never put in a message
        raise SettingsError(
            "EDGESIGHT_NODE_CREDENTIAL (node_credential): expected the esn1.<node id>.<mac> "
            "line `edgesight enrol NODE_ID` printed"
        )
    if s.node_id and s.node_id != enrolled_as:
        raise SettingsError(
            f"EDGESIGHT_NODE_ID (node_id): expected {enrolled_as!r}, the id the credential "
            f"(EDGESIGHT_NODE_CREDENTIAL) was enrolled for, got {s.node_id!r}"
        )


def _check_registry(s: NodeSettings) -> None:
    _check_credential(s)
    if s.registry_url:
        _check(
            s.registry_url.startswith(("http://", "https://")),
            "registry_url",
            s.registry_url,
            "the web app's http:// or https:// base URL",
        )
        if not (s.node_credential or s.registry_secret):  # values are never put in messages
            raise SettingsError(
                "EDGESIGHT_NODE_CREDENTIAL (node_credential): required when "
                "EDGESIGHT_REGISTRY_URL is set; run `edgesight enrol NODE_ID` where the web "
                "app's token key is and put the line it prints there (legacy: the web app's "
                "EDGESIGHT_REGISTRY_SECRET)"
            )
        _check(
            s.port != 0 or bool(s.public_url),
            "public_url",
            s.public_url,
            "a ws:// URL when the port is 0 (the URL cannot be guessed)",
        )
    if s.public_url:
        # "{hostname}": `edgesight serve` registers that for a node bound to all interfaces
        problem = node_url_problem(s.public_url, allow_template=True)
        if problem:
            raise SettingsError(f"EDGESIGHT_PUBLIC_URL (public_url): {problem}")


def _check_tls(s: NodeSettings) -> None:
    for cert, key in (("tls_cert", "tls_key"), ("wt_cert", "wt_key")):
        if (getattr(s, cert) is None) != (getattr(s, key) is None):
            given, missing = (cert, key) if getattr(s, key) is None else (key, cert)
            raise SettingsError(
                f"{NodeSettings.ENV[missing]} ({missing}): expected it together with "
                f"{NodeSettings.ENV[given]}, got none"
            )
    for name in NodeSettings.OPTIONAL_PATHS:
        path = getattr(s, name)
        _check(path is None or path.is_file(), name, str(path), "an existing PEM file")
