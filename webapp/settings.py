"""Web app settings, read once from a mapping (the environment, or CLI-built) and validated."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gpu_backend.setting_values import BOOLEAN_EXPECTED, parse_boolean
from pyodide_client.backend_choice import SETTINGS as BROWSER_BACKENDS
from pyodide_client.encoding import MODES as FRAME_ENCODINGS
from pyodide_client.node_url import node_url_problem
from pyodide_client.transport import POLICIES as TRANSPORT_POLICIES

from . import WebappError

__all__ = ["PROJECT_ROOT", "SettingsError", "WebappSettings"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SettingsError(WebappError, ValueError):
    """A setting that cannot be used; the message names the key."""


@dataclass(frozen=True)
class WebappSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # ws:// or wss:// URLs of inference nodes; "{hostname}" is replaced in the page by the
    # host the page was loaded from, so a LAN user reaches the node on the same machine.
    node_urls: tuple[str, ...] = ("ws://{hostname}:8001/ws",)
    model_dir: Path = PROJECT_ROOT / "models" / "nanodet-g-416"
    static_dir: Path = PROJECT_ROOT / "static"
    vendor_dir: Path = PROJECT_ROOT / "node_modules"
    # Frames a page keeps unanswered on its node (K). 0: adapted to each link (issue 16,
    # pyodide_client/inflight.py): 1 on loopback and LAN, where K=2 gave a few % more fps for
    # twice the grab-to-drawn latency, more for a distant node (docs/benchmarks.md). 1..64 pin it.
    max_in_flight: int = 0
    local_threads: int = 0  # Wasm threads for in-browser detection; 0: the page decides
    # Where in-browser detection runs (issue 20): auto measures WebGPU and Wasm on the
    # visitor's machine and keeps the faster; webgpu or wasm pin it (WebGPU still falls
    # back to Wasm when the browser has no adapter or loses its device).
    browser_backend: str = "auto"
    # How long the page waits for its in-browser engine to be ready before it retries
    # once and then says so (issue 18: a worker that never answered left "loading" forever).
    local_load_deadline_s: float = 30.0
    # How pages send frames (issue 9): auto picks raw or JPEG/WebP per node link from its
    # measured throughput (pyodide_client/encoding.py); raw, jpeg or webp pin it.
    frame_encoding: str = "auto"
    target_fps: float = 30.0  # the frame rate auto plans each link for
    # How pages reach a node that offers WebTransport (issue 16): auto starts each link on
    # the WebSocket and moves it to QUIC when its frames are measured late (a lossy link:
    # pyodide_client/transport.py); quic uses QUIC whenever offered; websocket never.
    page_transport: str = "auto"
    # Post-processing for in-browser detection: the same keys as the node's, so that one
    # environment gives the same boxes whether a node or the browser detects.
    score_threshold: float = 0.35
    iou_threshold: float = 0.6
    cross_class_iou_threshold: float = 0.7  # one label per object (issue 18)
    # Node registry (issue 4). Nodes register with their own credentials (issue 17,
    # `edgesight enrol`); revoked_nodes: ids whose credentials are refused from now on (a
    # lost or retired node; re-enrol a machine under a new id). registry_secret: legacy,
    # one secret any node may register any id with; empty: none accepted.
    revoked_nodes: tuple[str, ...] = ()
    registry_secret: str = field(default="", repr=False)
    redis_url: str = field(default="", repr=False)  # empty: in-memory; may carry a password
    heartbeat_interval_s: float = 2.0
    missed_heartbeats: int = 3  # a node this many heartbeats late is dropped
    registry_max_nodes: int = 1000  # registrations beyond this are refused (503)
    list_nodes_max: int = 16  # registered nodes GET /api/nodes lists, best first
    site: str = ""  # this web app's site: its nodes are listed first; empty: no preference
    # Observability (issue 12): /metrics needs "Authorization: Bearer <token>" when set.
    metrics_token: str = field(default="", repr=False)
    # HTTPS (issue 8): a PEM certificate chain and its key; both or neither. Reloaded by
    # the server when the files change (edgesight/tls.py).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A node whose heartbeats report its p95 above its objective for this long is degraded,
    # and recovers after holding it this long (webapp/sla.py).
    sla_window_s: float = 30.0
    # Traces (issue 12): OTLP/HTTP collector base URL (empty: no tracing, no cost), and the
    # share of frames pages sample when it is set.
    otlp_endpoint: str = ""
    trace_sample_rate: float = 0.01
    # Who may have the page and stream tokens (issue 8), see signin.py: "none", or any of
    # "users", "kiosk-key", "proxy-header".
    auth_modes: tuple[str, ...] = ("none",)
    users_file: Path | None = None  # users and kiosk keys (edgesight users ...)
    proxy_user_header: str = "X-Forwarded-User"
    # addresses/CIDRs whose X-Forwarded-For/-Proto (any mode) and user header are believed
    trusted_proxies: tuple[str, ...] = ()
    session_lifetime_s: float = 12 * 3600.0
    # Stream tokens: the Ed25519 signing key (created 0600 when missing; None: a key in
    # memory for this process only), their lifetime, and their audience (the cluster).
    token_key_path: Path | None = None
    token_lifetime_s: float = 300.0
    cluster_name: str = "edgesight"
    # Kiosk (issue 10): a video or image the kiosk loops while its camera is missing or
    # denied (it keeps retrying the camera), and the "In view" summary over the picture.
    kiosk_source: Path | None = None
    kiosk_in_view: bool = False
    # HTTP request bodies (issue 17, edgesight/guard.py): whole within this from their
    # headers, and never slower than this rate over a second the server reads them.
    body_timeout_s: float = 10.0
    min_body_rate_bytes_per_s: float = 512.0

    ENV: ClassVar[dict[str, str]] = {
        "host": "EDGESIGHT_HOST",
        "port": "EDGESIGHT_PORT",
        "node_urls": "EDGESIGHT_NODE_URLS",
        "model_dir": "EDGESIGHT_MODEL_DIR",
        "vendor_dir": "EDGESIGHT_VENDOR_DIR",
        "max_in_flight": "EDGESIGHT_FRAMES_IN_FLIGHT",
        "local_threads": "EDGESIGHT_LOCAL_THREADS",
        "browser_backend": "EDGESIGHT_BROWSER_BACKEND",
        "local_load_deadline_s": "EDGESIGHT_LOCAL_LOAD_DEADLINE_S",
        "frame_encoding": "EDGESIGHT_FRAME_ENCODING",
        "page_transport": "EDGESIGHT_PAGE_TRANSPORT",
        "target_fps": "EDGESIGHT_TARGET_FPS",
        "score_threshold": "EDGESIGHT_SCORE_THRESHOLD",
        "iou_threshold": "EDGESIGHT_IOU_THRESHOLD",
        "cross_class_iou_threshold": "EDGESIGHT_CROSS_CLASS_IOU_THRESHOLD",
        "revoked_nodes": "EDGESIGHT_REVOKED_NODES",
        "registry_secret": "EDGESIGHT_REGISTRY_SECRET",
        "redis_url": "EDGESIGHT_REDIS_URL",
        "heartbeat_interval_s": "EDGESIGHT_HEARTBEAT_INTERVAL_S",
        "missed_heartbeats": "EDGESIGHT_MISSED_HEARTBEATS",
        "registry_max_nodes": "EDGESIGHT_REGISTRY_MAX_NODES",
        "list_nodes_max": "EDGESIGHT_LIST_NODES_MAX",
        "site": "EDGESIGHT_SITE",
        "metrics_token": "EDGESIGHT_METRICS_TOKEN",
        "tls_cert": "EDGESIGHT_TLS_CERT",
        "tls_key": "EDGESIGHT_TLS_KEY",
        "sla_window_s": "EDGESIGHT_SLA_WINDOW_S",
        "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",  # the OpenTelemetry SDK's own name
        "trace_sample_rate": "EDGESIGHT_TRACE_SAMPLE_RATE",
        "auth_modes": "EDGESIGHT_AUTH",
        "users_file": "EDGESIGHT_USERS_FILE",
        "proxy_user_header": "EDGESIGHT_PROXY_USER_HEADER",
        "trusted_proxies": "EDGESIGHT_TRUSTED_PROXIES",
        "session_lifetime_s": "EDGESIGHT_SESSION_LIFETIME_S",
        "token_key_path": "EDGESIGHT_TOKEN_KEY",
        "token_lifetime_s": "EDGESIGHT_TOKEN_LIFETIME_S",
        "cluster_name": "EDGESIGHT_CLUSTER",
        "kiosk_source": "EDGESIGHT_KIOSK_SOURCE",
        "kiosk_in_view": "EDGESIGHT_KIOSK_IN_VIEW",
        "body_timeout_s": "EDGESIGHT_BODY_TIMEOUT_S",
        "min_body_rate_bytes_per_s": "EDGESIGHT_MIN_BODY_RATE_BYTES_PER_S",
    }

    def __post_init__(self) -> None:
        if self.kiosk_source is not None and not self.kiosk_source.is_file():
            raise SettingsError(
                f"EDGESIGHT_KIOSK_SOURCE (kiosk_source): expected a video or image file, "
                f"got {str(self.kiosk_source)!r}, which is not a file"
            )
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"EDGESIGHT_PORT (port): expected 0..65535, got {self.port!r}")
        for url in self.node_urls:
            problem = node_url_problem(url, allow_template=True)
            if problem:
                raise SettingsError(f"EDGESIGHT_NODE_URLS (node_urls): {problem}")
        if not 0 <= self.max_in_flight <= 64:
            raise SettingsError(
                "EDGESIGHT_FRAMES_IN_FLIGHT (max_in_flight): expected 0 (adapt) or 1..64, "
                f"got {self.max_in_flight!r}"
            )
        if not 0 <= self.local_threads <= 16:
            raise SettingsError(
                "EDGESIGHT_LOCAL_THREADS (local_threads): expected 0..16, "
                f"got {self.local_threads!r}"
            )
        if self.browser_backend not in BROWSER_BACKENDS:
            raise SettingsError(
                "EDGESIGHT_BROWSER_BACKEND (browser_backend): expected one of "
                f"{', '.join(BROWSER_BACKENDS)}, got {self.browser_backend!r}"
            )
        if not 1 <= self.local_load_deadline_s <= 600:
            raise SettingsError(
                "EDGESIGHT_LOCAL_LOAD_DEADLINE_S (local_load_deadline_s): expected 1..600 s, "
                f"got {self.local_load_deadline_s!r}"
            )
        if self.frame_encoding not in FRAME_ENCODINGS:
            raise SettingsError(
                "EDGESIGHT_FRAME_ENCODING (frame_encoding): expected one of "
                f"{', '.join(FRAME_ENCODINGS)}, got {self.frame_encoding!r}"
            )
        if self.page_transport not in TRANSPORT_POLICIES:
            raise SettingsError(
                "EDGESIGHT_PAGE_TRANSPORT (page_transport): expected one of "
                f"{', '.join(TRANSPORT_POLICIES)}, got {self.page_transport!r}"
            )
        if not 0 < self.target_fps <= 240:
            raise SettingsError(
                f"EDGESIGHT_TARGET_FPS (target_fps): expected a number in (0, 240], "
                f"got {self.target_fps!r}"
            )
        for name in ("score_threshold", "iou_threshold", "cross_class_iou_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise SettingsError(
                    f"{self.ENV[name]} ({name}): expected a number in (0, 1], got {value!r}"
                )
        if not 0 < self.body_timeout_s <= 3600:
            raise SettingsError(
                "EDGESIGHT_BODY_TIMEOUT_S (body_timeout_s): expected (0, 3600] s, "
                f"got {self.body_timeout_s!r}"
            )
        if self.min_body_rate_bytes_per_s < 0:
            raise SettingsError(
                "EDGESIGHT_MIN_BODY_RATE_BYTES_PER_S (min_body_rate_bytes_per_s): expected "
                f">= 0 (0: no minimum), got {self.min_body_rate_bytes_per_s!r}"
            )
        _check_registry(self)
        _check_tracing(self)
        _check_tls(self.tls_cert, self.tls_key)
        _check_signin(self)

    @property
    def is_tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def is_signin_required(self) -> bool:
        return self.auth_modes != ("none",)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> WebappSettings:
        values: dict[str, Any] = {}
        for name, key in cls.ENV.items():
            if key not in environ:
                continue
            raw = environ[key]
            if name in _INTEGERS:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise SettingsError(f"{key}: expected an integer, got {raw!r}") from None
            elif name in (
                "heartbeat_interval_s",
                "score_threshold",
                "iou_threshold",
                "cross_class_iou_threshold",
                "sla_window_s",
                "trace_sample_rate",
                "session_lifetime_s",
                "token_lifetime_s",
                "target_fps",
                "body_timeout_s",
                "min_body_rate_bytes_per_s",
                "local_load_deadline_s",
            ):
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise SettingsError(f"{key}: expected a number, got {raw!r}") from None
            elif name in ("node_urls", "auth_modes", "trusted_proxies", "revoked_nodes"):
                values[name] = tuple(u.strip() for u in raw.split(",") if u.strip())
            elif name.endswith(("_dir", "_file", "_path")):
                values[name] = Path(raw).expanduser()
            elif name.startswith("tls_") or name == "kiosk_source":
                values[name] = Path(raw).expanduser() if raw else None
            elif name == "kiosk_in_view":
                values[name] = _boolean(key, raw)
            else:
                values[name] = raw
        given = {k: v for k, v in overrides.items() if v is not None}
        is_tls = (given.get("tls_cert") or values.get("tls_cert")) is not None
        if is_tls and "node_urls" not in values and "node_urls" not in given:
            # An https page may only open wss:// sockets: the default node follows the page.
            values["node_urls"] = (DEFAULT_TLS_NODE_URL,)
        # Checked once, with flags applied: a cert from the environment and a key from a
        # flag are a valid pair.
        return cls(**{**values, **given})


_INTEGERS = (
    "port",
    "max_in_flight",
    "local_threads",
    "missed_heartbeats",
    "registry_max_nodes",
    "list_nodes_max",
)


def _boolean(key: str, raw: str) -> bool:
    try:
        return parse_boolean(raw)
    except ValueError:
        raise SettingsError(f"{key}: expected {BOOLEAN_EXPECTED}, got {raw!r}") from None


MIN_SECRET_CHARS = 16
DEFAULT_TLS_NODE_URL = "wss://{hostname}:8001/ws"


def _check_tls(cert: Path | None, key: Path | None) -> None:
    if cert is not None and key is None:
        raise SettingsError(
            "EDGESIGHT_TLS_KEY (tls_key): expected the certificate's key file, got none "
            "(EDGESIGHT_TLS_CERT is set)"
        )
    if key is not None and cert is None:
        raise SettingsError(
            "EDGESIGHT_TLS_CERT (tls_cert): expected the key's certificate file, got none "
            "(EDGESIGHT_TLS_KEY is set)"
        )
    for key_name, path in (("EDGESIGHT_TLS_CERT", cert), ("EDGESIGHT_TLS_KEY", key)):
        if path is not None and not path.is_file():
            raise SettingsError(f"{key_name}: expected a PEM file, got {str(path)!r} (not found)")


def _check_tracing(settings: WebappSettings) -> None:
    if settings.otlp_endpoint and not settings.otlp_endpoint.startswith(("http://", "https://")):
        raise SettingsError(
            "OTEL_EXPORTER_OTLP_ENDPOINT (otlp_endpoint): expected an http:// or https:// "
            f"collector URL, got {settings.otlp_endpoint!r}"
        )
    if not 0 <= settings.trace_sample_rate <= 1:
        raise SettingsError(
            "EDGESIGHT_TRACE_SAMPLE_RATE (trace_sample_rate): expected 0..1 (a share of "
            f"frames), got {settings.trace_sample_rate!r}"
        )


def _check_registry(settings: WebappSettings) -> None:
    # Neither the secret nor the Redis URL (it may hold a password) is echoed in a message.
    secret = settings.registry_secret
    if secret and (len(secret) < MIN_SECRET_CHARS or secret != secret.strip()):
        raise SettingsError(
            "EDGESIGHT_REGISTRY_SECRET (registry_secret): expected at least "
            f"{MIN_SECRET_CHARS} characters without surrounding whitespace"
        )
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise SettingsError(
            "EDGESIGHT_REDIS_URL (redis_url): expected a redis://, rediss:// or unix:// URL"
        )
    if not 0 < settings.sla_window_s <= 3600:
        raise SettingsError(
            "EDGESIGHT_SLA_WINDOW_S (sla_window_s): expected 0 < s <= 3600, "
            f"got {settings.sla_window_s!r}"
        )
    if not 0.01 <= settings.heartbeat_interval_s <= 3600:
        raise SettingsError(
            "EDGESIGHT_HEARTBEAT_INTERVAL_S (heartbeat_interval_s): expected 0.01..3600 s, "
            f"got {settings.heartbeat_interval_s!r}"
        )
    if not 1 <= settings.registry_max_nodes <= 100_000:
        raise SettingsError(
            "EDGESIGHT_REGISTRY_MAX_NODES (registry_max_nodes): expected 1..100000, "
            f"got {settings.registry_max_nodes!r}"
        )
    if not 1 <= settings.list_nodes_max <= 1000:
        raise SettingsError(
            "EDGESIGHT_LIST_NODES_MAX (list_nodes_max): expected 1..1000, "
            f"got {settings.list_nodes_max!r}"
        )
    if len(settings.site) > 200 or not settings.site.isprintable():
        raise SettingsError(
            "EDGESIGHT_SITE (site): expected at most 200 printable characters, "
            f"got {settings.site[:60]!r}"
        )
    if not 1 <= settings.missed_heartbeats <= 100:
        raise SettingsError(
            "EDGESIGHT_MISSED_HEARTBEATS (missed_heartbeats): expected 1..100, "
            f"got {settings.missed_heartbeats!r}"
        )


AUTH_MODES = ("none", "users", "kiosk-key", "proxy-header")


def _check_signin(settings: WebappSettings) -> None:
    modes = settings.auth_modes
    for mode in modes:
        if mode not in AUTH_MODES:
            raise SettingsError(
                f"EDGESIGHT_AUTH (auth_modes): expected {', '.join(AUTH_MODES)} "
                f"(several joined by commas), got {mode!r}"
            )
    if not modes or ("none" in modes and len(modes) > 1):
        raise SettingsError(
            f"EDGESIGHT_AUTH (auth_modes): expected 'none' alone or a list of sign-in modes, "
            f"got {','.join(modes)!r}"
        )
    if ("users" in modes or "kiosk-key" in modes) and settings.users_file is None:
        raise SettingsError(
            "EDGESIGHT_USERS_FILE (users_file): required with EDGESIGHT_AUTH=users or "
            "kiosk-key; create it with `edgesight users add NAME`"
        )
    if "proxy-header" in modes and not settings.trusted_proxies:
        raise SettingsError(
            "EDGESIGHT_TRUSTED_PROXIES (trusted_proxies): required with "
            "EDGESIGHT_AUTH=proxy-header: the addresses of the proxies whose "
            f"{settings.proxy_user_header} header is believed"
        )
    # believed in every mode: X-Forwarded-For/-Proto from these peers (webapp/forwarded.py)
    for item in settings.trusted_proxies:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                "EDGESIGHT_TRUSTED_PROXIES (trusted_proxies): expected IP addresses or "
                f"CIDR blocks, got {item!r}"
            ) from None
    if not 1 <= settings.token_lifetime_s <= 3600:
        raise SettingsError(
            "EDGESIGHT_TOKEN_LIFETIME_S (token_lifetime_s): expected 1..3600 s, "
            f"got {settings.token_lifetime_s!r}"
        )
    if not 60 <= settings.session_lifetime_s <= 30 * 86400:
        raise SettingsError(
            "EDGESIGHT_SESSION_LIFETIME_S (session_lifetime_s): expected 60..2592000 s, "
            f"got {settings.session_lifetime_s!r}"
        )
    if not settings.cluster_name.strip():
        raise SettingsError("EDGESIGHT_CLUSTER (cluster_name): expected a non-empty name")
