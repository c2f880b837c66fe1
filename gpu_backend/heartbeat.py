"""The node's side of the registry (issue 4): a background task that POSTs this node's
address and load to the web app every heartbeat interval, and DELETEs it on shutdown.
Both carry the node's own credential (``EDGESIGHT_NODE_CREDENTIAL``, issue 17; the legacy
shared secret without one), and the id registered is the one it was enrolled as.

The web app's answer names the interval it expects, and the node follows it, so the two
cannot disagree about when a node counts as gone. Failures are logged (once per kind of
failure, and once on recovery) and retried at the next interval; they never stop the node.
The task is started and stopped by the app's lifespan (``start_heartbeat``).

An https registry is verified against ``ca_file`` (``--ca-file``, e.g. the local CA from
``edgesight certs``) when set, else against the system's trust store; the secret travels
only over a verified connection or plain http the operator chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .node import Node
from .node_credential import credential_node_id
from .settings import NodeSettings, SettingsError

__all__ = [
    "HeartbeatSender",
    "advertised_url",
    "device_memory_bytes",
    "heartbeat_body",
    "node_id",
    "registry_ssl_context",
    "start_heartbeat",
]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0  # until the web app says otherwise
MIN_INTERVAL_S = 0.01
MAX_INTERVAL_S = 60.0
REQUEST_TIMEOUT_S = 5.0
DEREGISTER_TIMEOUT_S = 2.0  # shutdown should not hang on an unreachable web app
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def advertised_url(settings: NodeSettings) -> str:
    """The URL browsers should use: ``public_url``, else one built from the bind address
    (the machine's host name when bound to all interfaces)."""
    if settings.public_url:
        return settings.public_url
    host = socket.gethostname() if settings.host in WILDCARD_HOSTS else settings.host
    if ":" in host:
        host = f"[{host}]"
    scheme = "wss" if settings.is_tls else "ws"
    return f"{scheme}://{host}:{settings.port}/ws"


def node_id(settings: NodeSettings) -> str:
    """The id the node's credential was enrolled for; else ``node_id`` if set, else
    ``{hostname}-{port}``: stable across restarts, so a node that crashed and came back
    replaces its own stale entry."""
    enrolled_as = credential_node_id(settings.node_credential)
    if enrolled_as is not None:
        return enrolled_as
    if settings.node_id:
        return settings.node_id
    derived = re.sub(r"[^A-Za-z0-9._:@-]", "-", f"{socket.gethostname()}-{settings.port}")
    return derived.lstrip("._:@-")[:128] or f"node-{settings.port}"


def device_memory_bytes(device: str) -> int:
    """Total memory of the device the model runs on; 0 where unknown (CUDA: onnxruntime
    does not say, and a node should not need nvidia-smi to start)."""
    if device != "cpu":
        return 0
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return 0


def heartbeat_body(node: Node, memory_bytes: int = 0) -> dict[str, Any]:
    """The JSON a heartbeat carries; the web app's ``NodeEntry`` validates it."""
    s = node.settings
    card = node.model.card
    return {
        "node_id": node_id(s),
        "url": advertised_url(s),
        "name": s.node_name,
        "site": s.site,
        "provider": node.engine.provider,
        "device": node.engine.device_name,
        "device_memory_bytes": memory_bytes,
        "model": card.name,
        "model_sha256": card.sha256,
        "streams": node.streams_open,
        "max_streams": s.max_streams,
        "queue_depth": node.batcher.queue_depth,
        "inference_ms": round(node.batcher.last_inference_ms, 3),
        # the latency objective (issue 12): the registry marks a node that breaches it for
        # a window degraded, see webapp/sla.py; 0: no frame in the window
        "recent_p95_ms": round(node.latency.p95_ms() or 0.0, 3),
        "sla_p95_ms": s.sla_p95_ms,
        # WebTransport (issue 16): where and with which certificate hash (it rotates)
        "wt_port": node.wt_offer[0],
        "wt_cert_sha256": node.wt_offer[1],
    }


class HeartbeatSender:
    """``start()`` the loop, ``await stop()`` to end it and deregister.

    ``transport`` is the test seam (``httpx.MockTransport``, ``httpx.ASGITransport``)."""

    def __init__(
        self,
        registry_url: str,
        secret: str,
        body: Callable[[], Mapping[str, Any]],
        node_id: str,
        transport: httpx.AsyncBaseTransport | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.node_id = node_id
        self.interval_s = interval_s
        self.beats_ok = 0
        self._body = body
        self._client = httpx.AsyncClient(
            base_url=registry_url.rstrip("/"),
            headers={"Authorization": f"Bearer {secret}"},
            timeout=REQUEST_TIMEOUT_S,
            transport=transport,
            verify=verify,
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._failure: str | None = None  # what went wrong last time; None when it worked

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "heartbeat task failed; node %s is no longer registered",
                self.node_id,
                exc_info=task.exception(),
            )

    async def stop(self) -> None:
        """End the loop, then deregister, so that no heartbeat can re-register the node
        after it left. A heartbeat in flight is awaited, not cancelled: a cancelled POST
        may already be on its way, and landing after the DELETE it would list the node
        again until it expires (issue 10). Its own timeout bounds the wait."""
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=REQUEST_TIMEOUT_S + 1.0)
            if not done:  # only if the client's timeout failed to fire
                self._task.cancel()
                await asyncio.wait([self._task])
        await self.deregister()
        await self._client.aclose()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            started_s = time.monotonic()
            await self.beat()
            pause_s = max(0.0, started_s + self.interval_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause_s)

    async def beat(self) -> bool:
        """Send one heartbeat; True when the web app took it."""
        try:
            response = await self._client.post("/api/nodes/register", json=dict(self._body()))
        except httpx.HTTPError as exc:
            self._failed(f"cannot reach the registry: {type(exc).__name__}: {exc}")
            return False
        if response.status_code not in (200, 201):
            self._failed(_refusal(response))
            return False
        if response.status_code == 201 and self.beats_ok:
            log.info("registry had dropped node %s; registered again", self.node_id)
        self._adopt_interval(response)
        self.beats_ok += 1
        if self._failure is not None:
            log.info("heartbeats to the registry work again")
            self._failure = None
        return True

    async def deregister(self) -> None:
        try:
            response = await self._client.delete(
                f"/api/nodes/{quote(self.node_id, safe='')}", timeout=DEREGISTER_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            # Info, not a warning: under `edgesight serve` the web app stops first, and the
            # registry drops the node after its missed heartbeats anyway.
            log.info(
                "could not deregister node %s: %s; the registry will expire it",
                self.node_id,
                type(exc).__name__,
            )
            return
        if response.status_code in (204, 404):  # 404: already expired, nothing to undo
            log.info("node %s deregistered", self.node_id)
        else:
            log.warning("could not deregister node %s: %s", self.node_id, _refusal(response))

    def _failed(self, failure: str) -> None:
        # Once per kind of failure: a web app down for an hour is one line, not 1,800.
        if failure != self._failure:
            log.warning("heartbeat failed, retrying every %.3g s: %s", self.interval_s, failure)
        self._failure = failure

    def _adopt_interval(self, response: httpx.Response) -> None:
        try:
            advised = response.json().get("heartbeat_interval_s")
        except (ValueError, AttributeError):
            return
        if isinstance(advised, int | float) and math.isfinite(advised):
            self.interval_s = min(max(float(advised), MIN_INTERVAL_S), MAX_INTERVAL_S)


def _refusal(response: httpx.Response) -> str:
    status = response.status_code
    if status == 401:
        return (
            "the registry refused the credential (401): check EDGESIGHT_NODE_CREDENTIAL "
            "(`edgesight enrol NODE_ID` with the web app's current token key) or the legacy "
            "EDGESIGHT_REGISTRY_SECRET"
        )
    if status == 422:
        return f"the registry rejected the heartbeat (422): {response.text[:500]}"
    try:  # the registry says why in "error": full (503), too large (413), not yours (403)
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str) and error:
        return f"the registry answered HTTP {status}: {error[:300]}"
    return f"the registry answered HTTP {status}"


def registry_ssl_context(settings: NodeSettings) -> ssl.SSLContext:
    """How an https registry is verified: ``ca_file`` only, else the system store."""
    if settings.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"EDGESIGHT_CA_FILE (ca_file): expected PEM CA certificates in "
            f"{settings.ca_file} ({exc})"
        ) from None


def start_heartbeat(
    node: Node, transport: httpx.AsyncBaseTransport | None = None
) -> HeartbeatSender | None:
    """Start heartbeating when a registry is configured; None when it is not."""
    s = node.settings
    # the node's own credential; the legacy shared secret only without one
    bearer = s.node_credential or s.registry_secret
    if not (s.registry_url and bearer):
        return None
    memory_bytes = device_memory_bytes(node.engine.device_name)
    sender = HeartbeatSender(
        s.registry_url,
        bearer,
        lambda: heartbeat_body(node, memory_bytes),
        node_id(s),
        transport=transport,
        verify=registry_ssl_context(s),
    )
    sender.start()
    log.info("node %s heartbeats to %s as %s", sender.node_id, s.registry_url, advertised_url(s))
    return sender
