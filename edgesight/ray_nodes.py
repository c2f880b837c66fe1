"""edgesight nodes on a Ray cluster: Ray Core places, restarts and follows them; frames
never pass through Ray.

    edgesight ray up      a detached supervisor actor places one node actor per GPU (or
                          ``per_gpu`` per GPU) on every Ray machine, plus CPU nodes if asked
    edgesight ray status  placement and health
    edgesight ray down    nodes deregister and stop; the supervisor goes

Each node actor runs the same app as ``edgesight node`` (``gpu_backend.app.create_app``)
under uvicorn on its own port of its machine, and registers and heartbeats with the
registry exactly like a standalone node. Browsers talk to it directly over WebSocket:
Ray Serve's HTTP proxy would add a Python hop per frame (+5-7 ms, about 9x the CPU,
permessage-deflate it cannot turn off, one request slot per socket; see docs/ray.md).

The supervisor reconciles every ``interval_s``: a machine that joins gets nodes on its
GPUs; a machine that leaves (dead or drained) has its nodes deregistered from the
registry at once, not after the registry's heartbeat expiry; a node actor that dies is
restarted by Ray (``max_restarts=-1``) on the same machine and port, and re-registers
under the same node id. Node actors are detached, so a restarted supervisor adopts them
by name rather than starting a second set.

Settings pass through unchanged: every ``EDGESIGHT_*`` variable of the ``ray up`` caller
reaches the node actors (model, batching, TLS, tokens), with the host, port, node id,
public URL and registry URL set per placement. ``ray`` is an optional extra
(``pip install 'edgesight[ray]'``) and imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import quote

__all__ = [
    "NAMESPACE",
    "SUPERVISOR_NAME",
    "ClusterSpec",
    "NodeActor",
    "Placement",
    "RayError",
    "Supervisor",
    "desired_placements",
    "down",
    "status",
    "up",
]

log = logging.getLogger(__name__)

NAMESPACE = "edgesight"
SUPERVISOR_NAME = "edgesight-supervisor"
NODE_ACTOR_PREFIX = "edgesight-node-"
DEFAULT_URL_TEMPLATE = "{scheme}://{host}:{port}/ws"
STOP_TIMEOUT_S = 15.0


class RayError(RuntimeError):
    """Ray is missing, unreachable, or the cluster cannot take the nodes asked for."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError(
            "Ray is not installed: pip install 'edgesight[ray]' (on every Ray machine)"
        ) from None
    return ray


@dataclass(frozen=True)
class ClusterSpec:
    """What ``ray up`` asks for; everything a supervisor needs to place nodes."""

    registry_url: str
    env: Mapping[str, str] = field(default_factory=dict)  # EDGESIGHT_* passed to nodes
    per_gpu: int = 1  # node processes per GPU (each gets 1/per_gpu of it)
    cpu_nodes: int = 0  # CPU-only nodes, spread over the machines
    port_base: int = 8001  # first port tried on each machine
    url_template: str = DEFAULT_URL_TEMPLATE  # {scheme} {host} {port}
    bind: str = ""  # bind address; empty: the machine's Ray address
    interval_s: float = 1.0  # reconcile period

    def __post_init__(self) -> None:
        if not self.registry_url.startswith(("http://", "https://")):
            raise RayError(
                f"--registry-url: expected the web app's http(s):// URL, got {self.registry_url!r}"
            )
        if not 1 <= self.per_gpu <= 16:
            raise RayError(f"--per-gpu: expected 1 to 16, got {self.per_gpu}")
        if not 0 <= self.cpu_nodes <= 256:
            raise RayError(f"--cpu-nodes: expected 0 to 256, got {self.cpu_nodes}")
        if not 1 <= self.port_base <= 65535:
            raise RayError(f"--port-base: expected 1 to 65535, got {self.port_base}")
        for name in ("{host}", "{port}"):
            if name not in self.url_template:
                raise RayError(
                    f"--public-url-template: expected {name} in it, got {self.url_template!r}"
                )


@dataclass(frozen=True)
class Placement:
    """One node process: where it runs and how browsers reach it."""

    key: str  # "<ray node id prefix>-gpu<i>" or "cpu<i>"
    ray_node_id: str
    host: str  # the machine's address in the Ray cluster
    port: int
    kind: str  # "gpu" or "cpu"
    gpu_fraction: float

    @property
    def node_id(self) -> str:
        return f"ray-{self.key}"

    @property
    def actor_name(self) -> str:
        return NODE_ACTOR_PREFIX + self.key


def _is_tls(env: Mapping[str, str]) -> bool:
    return bool(env.get("EDGESIGHT_TLS_CERT") and env.get("EDGESIGHT_TLS_KEY"))


def public_url(spec: ClusterSpec, placement: Placement) -> str:
    scheme = "wss" if _is_tls(spec.env) else "ws"
    host = f"[{placement.host}]" if ":" in placement.host else placement.host
    return spec.url_template.format(scheme=scheme, host=host, port=placement.port)


def desired_placements(
    spec: ClusterSpec, machines: list[Mapping[str, Any]], current: Mapping[str, Placement]
) -> list[Placement]:
    """The placements the cluster should have, given the alive Ray machines
    (``ray.nodes()`` entries) and the placements already made (kept where still valid,
    so nodes keep their ports). Pure: unit-tested without Ray."""
    alive = sorted((m for m in machines if m.get("Alive")), key=lambda m: str(m.get("NodeID", "")))
    used_ports: dict[str, set[int]] = {}
    kept: dict[str, Placement] = {}
    alive_ids = {str(m["NodeID"]) for m in alive}
    for key, placement in current.items():
        if placement.ray_node_id in alive_ids:
            kept[key] = placement
            used_ports.setdefault(placement.host, set()).add(placement.port)

    def port_on(host: str) -> int:
        taken = used_ports.setdefault(host, set())
        port = spec.port_base
        while port in taken:
            port += 1
        if port > 65535:
            raise RayError(f"no free port from {spec.port_base} on {host}")
        taken.add(port)
        return port

    wanted: list[Placement] = []
    for machine in alive:
        ray_id = str(machine["NodeID"])
        host = str(machine.get("NodeManagerAddress", "127.0.0.1"))
        gpus = int(float(machine.get("Resources", {}).get("GPU", 0)))
        for gpu in range(gpus):
            for share in range(spec.per_gpu):
                suffix = f"gpu{gpu}" if spec.per_gpu == 1 else f"gpu{gpu}.{share}"
                key = f"{ray_id[:12]}-{suffix}"
                placement = kept.get(key) or Placement(
                    key, ray_id, host, port_on(host), "gpu", 1.0 / spec.per_gpu
                )
                wanted.append(placement)
    for index in range(spec.cpu_nodes if alive else 0):
        key = f"cpu{index}"
        cpu_placement = kept.get(key)
        if cpu_placement is None:  # round robin over the machines, stable by index
            machine = alive[index % len(alive)]
            host = str(machine.get("NodeManagerAddress", "127.0.0.1"))
            cpu_placement = Placement(key, str(machine["NodeID"]), host, port_on(host), "cpu", 0.0)
        wanted.append(cpu_placement)
    return wanted


class NodeActor:
    """One edgesight node inside a Ray actor process: the same app as ``edgesight node``
    under uvicorn on a thread, so the actor stays free to answer ``ready`` and ``stop``."""

    def __init__(self, spec: ClusterSpec, placement: Placement) -> None:
        import os

        from gpu_backend.app import create_app
        from gpu_backend.settings import NodeSettings

        from .serving import ServerThread
        from .tls import server_context

        environ = {**os.environ, **spec.env}
        settings = NodeSettings.from_env(
            environ,
            host=spec.bind or placement.host,
            port=placement.port,
            node_id=placement.node_id,
            node_name=environ.get("EDGESIGHT_NODE_NAME") or placement.node_id,
            public_url=public_url(spec, placement),
            registry_url=spec.registry_url,
            device_id=0,  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        )
        if placement.kind == "cpu":
            settings = replace(settings, provider="cpu")
        context = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            context = server_context(settings.tls_cert, settings.tls_key)
        self.placement = placement
        self.url = settings.public_url
        self.server = ServerThread(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            max_message_bytes=settings.max_message_bytes,
            ssl_context=context,
        ).start()
        self.started_s = time.time()
        log.info("node %s serves %s", placement.node_id, self.url)

    def ready(self) -> dict[str, Any]:
        import os

        return {
            **asdict(self.placement),
            "url": self.url,
            "pid": os.getpid(),
            "started_s": self.started_s,
        }

    def stop(self) -> bool:
        """Stop serving; the app's lifespan deregisters the node first."""
        self.server.stop()
        return True


class Supervisor:
    """The detached control loop: places node actors, follows machines, deregisters the
    nodes of machines that left. Runs as a threaded Ray actor."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.placements: dict[str, Placement] = {}
        self.actors: dict[str, Any] = {}
        self.events: list[str] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._adopt()
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self._thread.start()

    def _note(self, text: str) -> None:
        log.info("%s", text)
        self.events = [*self.events[-49:], f"{time.strftime('%H:%M:%S')} {text}"]

    def _adopt(self) -> None:
        """After a supervisor restart: take over node actors that are still alive."""
        ray = _ray()
        for placement in desired_placements(self.spec, ray.nodes(), {}):
            try:
                handle = ray.get_actor(placement.actor_name, namespace=NAMESPACE)
            except ValueError:
                continue
            try:
                info = ray.get(handle.ready.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - any Ray failure: not adoptable, place anew
                continue
            kept = Placement(**{k: info[k] for k in Placement.__dataclass_fields__})
            self.placements[kept.key] = kept
            self.actors[kept.key] = handle
            self._note(f"adopted {kept.node_id} at {info['url']}")

    def _loop(self) -> None:
        while not self._stopping.wait(self.spec.interval_s):
            try:
                self.reconcile()
            except Exception:  # a bad round must not end the loop
                log.exception("reconcile failed; trying again")

    def reconcile(self) -> None:
        ray = _ray()
        with self._lock:
            if self._stopping.is_set():
                return
            wanted = desired_placements(self.spec, ray.nodes(), self.placements)
            wanted_keys = {p.key for p in wanted}
            for key in [k for k in self.placements if k not in wanted_keys]:
                self._retire(key, "its machine left the Ray cluster")
            for placement in wanted:
                if placement.key not in self.actors:
                    self._place(placement)

    def _place(self, placement: Placement) -> None:
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options: dict[str, Any] = {
            "name": placement.actor_name,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "max_restarts": -1,  # Ray restarts a node that dies, on the same machine
            "max_concurrency": 4,
            "num_cpus": 1 if placement.kind == "cpu" else 0,
            "num_gpus": placement.gpu_fraction,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(
                placement.ray_node_id, soft=False
            ),
        }
        handle = ray.remote(NodeActor).options(**options).remote(self.spec, placement)
        self.placements[placement.key] = placement
        self.actors[placement.key] = handle
        self._note(f"placed {placement.node_id} on {placement.host}:{placement.port}")

    def _retire(self, key: str, why: str) -> None:
        ray = _ray()
        placement = self.placements.pop(key)
        handle = self.actors.pop(key, None)
        self._deregister(placement)
        if handle is not None:
            with contextlib.suppress(Exception):  # already gone with its machine
                ray.kill(handle, no_restart=True)
        self._note(f"retired {placement.node_id}: {why}")

    def _deregister(self, placement: Placement) -> None:
        """DELETE the node from the registry now, rather than after its expiry."""
        import ssl

        import httpx

        secret = self.spec.env.get("EDGESIGHT_REGISTRY_SECRET", "")
        ca_file = self.spec.env.get("EDGESIGHT_CA_FILE")
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        url = f"{self.spec.registry_url.rstrip('/')}/api/nodes/{quote(placement.node_id, safe='')}"
        try:
            response = httpx.delete(
                url, headers={"Authorization": f"Bearer {secret}"}, timeout=5.0, verify=verify
            )
        except httpx.HTTPError as exc:
            log.warning("could not deregister %s: %s", placement.node_id, type(exc).__name__)
            return
        if response.status_code not in (204, 404):
            log.warning("could not deregister %s: HTTP %d", placement.node_id, response.status_code)

    def status(self) -> dict[str, Any]:
        ray = _ray()
        nodes: list[dict[str, Any]] = []
        with self._lock:
            items = list(self.placements.items())
            handles = dict(self.actors)
        for key, placement in items:
            entry: dict[str, Any] = {
                **asdict(placement),
                "node_id": placement.node_id,
                "url": public_url(self.spec, placement),
            }
            try:
                info = ray.get(handles[key].ready.remote(), timeout=2)
                entry.update(state="serving", pid=info["pid"], started_s=info["started_s"])
            except Exception as exc:  # noqa: BLE001 - starting, restarting or dead
                entry.update(state="not ready", problem=type(exc).__name__)
            nodes.append(entry)
        return {
            "spec": asdict(self.spec) | {"env": sorted(self.spec.env)},
            "nodes": nodes,
            "events": list(self.events),
        }

    def down(self) -> int:
        """Deregister and stop every node; returns how many were stopped."""
        ray = _ray()
        self._stopping.set()
        with self._lock:
            items = list(self.actors.items())
            for key, handle in items:
                with contextlib.suppress(Exception):  # dead or stuck: deregistered below
                    ray.get(handle.stop.remote(), timeout=STOP_TIMEOUT_S)
                self._deregister(self.placements[key])
                ray.kill(handle, no_restart=True)
            self.actors.clear()
            self.placements.clear()
        return len(items)


def _connect(address: str) -> Any:
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError) as exc:
            raise RayError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def up(address: str, spec: ClusterSpec) -> dict[str, Any]:
    """Start (or find) the supervisor; returns its status once it has placed its nodes."""
    ray = _connect(address)
    try:
        ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
    except ValueError:
        pass  # not up yet: the usual case
    else:
        raise RayError(
            "edgesight is already up on this Ray cluster: `edgesight ray status` shows it, "
            "`edgesight ray down` removes it"
        )
    supervisor = (
        ray.remote(Supervisor)
        .options(
            name=SUPERVISOR_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=-1,
            max_concurrency=4,
            num_cpus=0,
        )
        .remote(spec)
    )
    ray.get(supervisor.reconcile.remote())
    result: dict[str, Any] = ray.get(supervisor.status.remote())
    return result


def _supervisor(address: str) -> Any:
    ray = _connect(address)
    try:
        return ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
    except ValueError:
        raise RayError("edgesight is not up on this Ray cluster (no supervisor)") from None


def status(address: str) -> dict[str, Any]:
    ray = _ray()
    result: dict[str, Any] = ray.get(_supervisor(address).status.remote())
    return result


def down(address: str) -> int:
    ray = _ray()
    supervisor = _supervisor(address)
    stopped = int(ray.get(supervisor.down.remote()))
    ray.kill(supervisor, no_restart=True)
    return stopped


def spec_from(registry_url: str, environ: Mapping[str, str], **overrides: Any) -> ClusterSpec:
    env = {k: v for k, v in environ.items() if k.startswith("EDGESIGHT_")}
    given = {k: v for k, v in overrides.items() if v is not None}
    return ClusterSpec(registry_url=registry_url, env=env, **given)
