"""What the benchmarks share: server subprocesses on loopback, CPU accounting from /proc,
percentiles, the test photos as camera frames, and result files.

Not a benchmark itself; ``load.py``, ``seed_baseline.py`` and ``gpu_check.py`` import it
(each puts ``bench/`` on ``sys.path`` by being run as a script from it).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"
CAMERA_WIDTH_PX = 640
CAMERA_HEIGHT_PX = 480
PHOTOS = ("astronaut", "chelsea")

log = logging.getLogger("bench.harness")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server subprocess bound to 127.0.0.1; ready once its port accepts connections
    (uvicorn binds only after the app's lifespan has started, so the model is loaded)."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        env: Mapping[str, str] | None = None,
        name: str = "server",
        startup_timeout_s: float = 120.0,
        output: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.output = output  # its stdout and stderr go there (to measure its log); None: ours
        self.port = port
        # This environment (a venv, CUDA library paths) minus stray EDGESIGHT_* settings,
        # then the bench's own.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EDGESIGHT_")}
        self.env = {**inherited, **(env or {})}
        self.name = name
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self) -> ServerProcess:
        if self.output is None:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env)
        else:
            with self.output.open("wb") as out:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
                )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    log.info("%s up on 127.0.0.1:%d (pid %d)", self.name, self.port, self.pid)
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited during start-up") from None
                time.sleep(0.05)  # polling a port that another process opens
        self.stop()
        raise TimeoutError(f"{self.name} did not open port {self.port} in time")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def edgesight_node(
    port: int,
    max_batch_size: int = 8,
    max_batch_wait_ms: float = 2.0,
    max_in_flight: int = 2,
    threads: int = 0,
    name: str = "edgesight node",
    model: Path | None = None,
) -> ServerProcess:
    """``python -m edgesight node`` with batching configured through its environment."""
    env = {
        **({"EDGESIGHT_MODEL": str(model)} if model is not None else {}),
        "EDGESIGHT_MAX_BATCH_SIZE": str(max_batch_size),
        "EDGESIGHT_MAX_BATCH_WAIT_MS": str(max_batch_wait_ms),
        "EDGESIGHT_MAX_IN_FLIGHT": str(max_in_flight),
        "EDGESIGHT_INTRA_OP_THREADS": str(threads),
    }
    argv = [sys.executable, "-m", "edgesight", "--log-level", "warning", "node"]
    return ServerProcess([*argv, "--port", str(port)], port, env, name)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU used by one process between ``start()`` and ``stop()``, as % of one core."""

    pid: int
    cpu_s: float = 0.0
    wall_s: float = 0.0
    _cpu0: float = 0.0
    _wall0: float = 0.0

    def start(self) -> None:
        self._cpu0, self._wall0 = cpu_seconds(self.pid), time.monotonic()

    def stop(self) -> None:
        self.cpu_s = cpu_seconds(self.pid) - self._cpu0
        self.wall_s = time.monotonic() - self._wall0

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def summary(samples: Sequence[float], digits: int = 2) -> dict[str, float | int]:
    """count, p50, p95, p99 and mean of a sample (nearest-rank percentiles)."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)

    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered), digits),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "mean_ms": round(statistics.fmean(ordered), digits),
    }


def camera_frames() -> list[tuple[bytes, int, int]]:
    """The test photos as a 640x480 webcam shows them (letterboxed onto black, as the
    fake cameras of the end-to-end tests), in RGBA as a canvas hands them to Python."""
    sys.path.insert(0, str(ROOT / "playwright"))
    from fake_camera import fit_frame, photo

    frames = []
    for name in PHOTOS:
        rgb = fit_frame(photo(name), CAMERA_WIDTH_PX, CAMERA_HEIGHT_PX)
        rgba = np.full((CAMERA_HEIGHT_PX, CAMERA_WIDTH_PX, 4), 255, np.uint8)
        rgba[..., :3] = rgb
        frames.append((rgba.tobytes(), CAMERA_WIDTH_PX, CAMERA_HEIGHT_PX))
    return frames


def model_inputs(frames: Sequence[tuple[bytes, int, int]]) -> list[npt.NDArray[np.uint8]]:
    """The uint8 [3, 416, 416] tensors the browser sends for these frames."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from pyodide_client.preprocess import Letterbox

    tensors = []
    for rgba, w, h in frames:
        filled = Letterbox.for_frame(w, h, 416).fill(rgba)
        tensors.append(np.frombuffer(bytes(filled), np.uint8).reshape(3, 416, 416))
    return tensors


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{platform.machine()} {model}, {cores} cores, Python {platform.python_version()}"


def write_result(path: Path, result: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, right-aligned numbers."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
