"""End-to-end fixtures: real servers, Debian's Chromium driven by Playwright, fake cameras
made from real photos at test time. Playwright never downloads a browser here.

The page runs under its Content-Security-Policy (no ``'unsafe-eval'``): give
``page.wait_for_function`` a function (``"() => window.edgesight.api"``), not an expression
string, which Playwright would have to ``eval`` in the page. A CSP refusal is a console error."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_camera import fit_frame, photo, write_y4m
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edgesight.serving import ServerThread  # noqa: E402
from gpu_backend.app import create_app as create_node_app  # noqa: E402
from gpu_backend.settings import NodeSettings  # noqa: E402
from webapp.app import create_app as create_webapp  # noqa: E402
from webapp.settings import WebappSettings  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
MODEL_PATH = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"


def camera_args(video: Path, allow_camera: bool = True) -> list[str]:
    """Chromium flags for a fake webcam playing ``video`` (a .y4m), the permission
    prompt answered yes unless ``allow_camera`` is False (then headless denies it)."""
    args = ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"]
    return [*args, "--use-fake-ui-for-media-stream"] if allow_camera else args


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or CHROMIUM
    if not Path(path).is_file():
        pytest.fail(
            "Debian's chromium is not installed: run scripts/setup-test.sh "
            "(apt-get install chromium); Playwright must not download its own browser"
        )
    return path


@pytest.fixture(scope="session")
def cameras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """y4m files Chromium plays as the webcam, one per photo (10 identical frames)."""
    folder = tmp_path_factory.mktemp("cameras")
    return {
        name: write_y4m(folder / f"{name}.y4m", [fit_frame(photo(name))] * 10)
        for name in ("astronaut", "chelsea")
    }


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@dataclass
class Stack:
    node: ServerThread | None
    webapp: ServerThread

    @property
    def url(self) -> str:
        return f"{self.webapp.http_url}/"


def start_node(name: str = "e2e-node", **settings_: Any) -> ServerThread:
    settings = NodeSettings(port=0, model_path=MODEL_PATH, node_name=name, **settings_)
    return ServerThread(create_node_app(settings), max_message_bytes=settings.max_message_bytes)


def start_webapp(node_urls: tuple[str, ...], **settings: Any) -> ServerThread:
    return ServerThread(create_webapp(WebappSettings(port=0, node_urls=node_urls, **settings)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    """A node in its own process, as in production, so a test can kill it outright
    (SIGKILL: no close frames, no goodbye) and start it again on the same port."""

    def __init__(
        self,
        name: str = "e2e-node",
        port: int | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.args = args  # extra `edgesight node` flags
        self.env = env  # extra environment variables
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> NodeProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgesight",
                "--log-level",
                "warning",
                "node",
                "--port",
                str(self.port),
                "--name",
                self.name,
                *self.args,
            ],
            cwd=ROOT,
            env={**os.environ, **(self.env or {})},
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                threading.Event().wait(0.05)  # another process is starting: poll its port
        raise TimeoutError(f"node {self.name} not ready after {timeout_s} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the node keeps its sockets open but answers nothing (a stall)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A web app and one real node, as `edgesight serve` runs them."""
    with start_node() as node, start_webapp((node.ws_url,)) as web:
        yield Stack(node, web)


CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (event) => console.error(
  `CSP violation: ${event.violatedDirective} refused ${event.blockedURI || "inline code"}`));
"""


@dataclass
class Console:
    """What the page printed: errors fail a test that expects a clean page."""

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        self.messages.append(f"{message.type}: {message.text}")
        if message.type == "error":
            self.errors.append(message.text)


@dataclass
class BrowserPage:
    browser: Browser
    page: Page
    console: Console


@pytest.fixture
def open_page(
    playwright_driver: Playwright, chromium_path: str, cameras: dict[str, Path]
) -> Iterator[Callable[..., BrowserPage]]:
    """open_page(url, camera="astronaut" | None, allow_camera=True, viewport=None)."""
    browsers: list[Browser] = []

    def _open(
        url: str,
        camera: str | None = "astronaut",
        allow_camera: bool = True,
        viewport: dict[str, int] | None = None,
    ) -> BrowserPage:
        args = list(CHROMIUM_ARGS)
        if camera is not None:
            args += camera_args(cameras[camera], allow_camera)
        browser = playwright_driver.chromium.launch(executable_path=chromium_path, args=args)
        browsers.append(browser)
        page = browser.new_page(viewport=viewport) if viewport else browser.new_page()  # type: ignore[arg-type]
        console = Console()
        page.on("console", console.record)
        page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
        # Chromium does not put CSP refusals on the console API: report them there (issue 8)
        page.add_init_script(CSP_REPORTER)
        page.goto(url)
        return BrowserPage(browser, page, console)

    yield _open
    for browser in browsers:
        browser.close()
