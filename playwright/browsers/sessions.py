"""Firefox ESR and WebKitGTK driven from pytest, behind one small interface (issue 18).

Playwright drives Chromium (conftest.py). For the other two engines Debian ships:

- Firefox ESR over WebDriver BiDi, through puppeteer-core 24.x in a Node process
  (``firefox_driver.mjs``, JSON lines on its stdin/stdout). Playwright's own BiDi route fails
  on ESR 153 (``emulation.setMediaFeaturesOverride: unknown command``).
- WebKitGTK's MiniBrowser through WebKitWebDriver and Selenium, on an Xvfb display of its
  own. ``--automation`` is required (without it the session hangs); the mock camera needs
  ``--enable-media-stream=true --enable-mock-capture-devices=true``.

Both give a ``BrowserSession``: page functions are passed as source text and called with
one argument (never ``eval``-ed inside the page: the page's CSP forbids it). ``resize`` and
``screenshot`` serve scripts/screenshots.py: WebKitGTK sizes its window, not its viewport,
keeps a device pixel ratio of 1 and cannot make its window as narrow as a phone (the viewport
it gives is what ``resize`` returns).
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIREFOX = "/usr/bin/firefox-esr"
WEBKIT_DRIVER = "/usr/bin/WebKitWebDriver"
MINIBROWSER_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1"),
    Path("/usr/lib/aarch64-linux-gnu/webkit2gtk-4.1"),
    Path("/usr/libexec/webkit2gtk-4.1"),
)
WEBKIT_ARGS = ("--automation", "--enable-media-stream=true", "--enable-mock-capture-devices=true")
LAUNCH_TIMEOUT_S = 60.0
COMMAND_SLACK_S = 30.0
WEBKIT_BUSY_PAGE_S = 240.0  # a reply may lag the page-side deadline by this much on a busy machine

# Firefox reports a WebSocket that never opened (refused, or closed by the page while still
# connecting: the page gives up on a node that does not answer) as an uncaught page error,
# though the page handles it (issue 18). It words it one of two ways: "can't establish a
# connection" once the document has loaded, "was interrupted while the page was loading"
# before (Firefox's WebSocket.cpp picks netInterrupt while the document still loads, as after
# a reload served by the service worker). Exactly those messages are forgiven, for a node's
# ws:// or wss:// URL; every other error is the product's.
FIREFOX_SOCKET_NOT_OPENED = re.compile(
    r"pageerror: (?:Firefox can\u2019t establish a connection to the server at wss?://[^\s]+/ws\."
    r"|The connection to wss?://[^\s]+/ws was interrupted while the page was loading\.)"
)


class BrowserError(Exception):
    """The browser or its driver failed (not the page under test)."""


class BrowserSession(Protocol):
    name: str

    def open(self, url: str) -> None: ...
    def evaluate(self, fn: str, arg: Any = None) -> Any: ...
    def wait(self, fn: str, arg: Any = None, timeout_s: float = 60.0) -> None: ...
    def upload(self, selector: str, path: Path) -> None: ...
    def reload(self) -> None: ...
    def resize(self, width_px: int, height_px: int, scale: float) -> tuple[int, int]: ...
    def screenshot(self, path: Path) -> None: ...
    def product_errors(self) -> list[str]: ...
    def close(self) -> None: ...


def is_firefox_socket_not_opened(text: str) -> bool:
    return FIREFOX_SOCKET_NOT_OPENED.fullmatch(text) is not None


@dataclass
class FirefoxSession:
    """firefox-esr through ``firefox_driver.mjs`` (puppeteer-core over WebDriver BiDi)."""

    name: str = "firefox"
    errors: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _replies: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    _next_id: int = 0

    def launch(self) -> FirefoxSession:
        node = shutil.which("node")
        if node is None:
            raise BrowserError("node is not installed: the Firefox tests drive it from Node.js")
        self._proc = subprocess.Popen(
            [node, str(HERE / "firefox_driver.mjs"), FIREFOX],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        first = self._reply(LAUNCH_TIMEOUT_S)
        if first.get("event") != "launched":
            raise BrowserError(f"expected firefox to launch, got {first}")
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            message = json.loads(line)
            if message.get("event") == "error":
                self.errors.append(message["text"])
            else:
                self._replies.put(message)
        self._replies.put({"event": "exited"})

    def _reply(self, timeout_s: float) -> dict[str, Any]:
        try:
            return self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise BrowserError(f"the Firefox driver did not answer within {timeout_s} s") from None

    def _call(self, op: str, timeout_s: float = COMMAND_SLACK_S, **fields: Any) -> Any:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._next_id += 1
        self._proc.stdin.write(json.dumps({"id": self._next_id, "op": op, **fields}) + "\n")
        self._proc.stdin.flush()
        reply = self._reply(timeout_s)
        if reply.get("id") != self._next_id:
            raise BrowserError(f"expected the reply to request {self._next_id}, got {reply}")
        if not reply["ok"]:
            raise BrowserError(f"firefox {op}: {reply['error']}")
        return reply["value"]

    def open(self, url: str) -> None:
        self.errors.clear()  # a new page: only its own errors count
        self._call("open", LAUNCH_TIMEOUT_S, url=url)

    def evaluate(self, fn: str, arg: Any = None) -> Any:
        return self._call("evaluate", fn=fn, arg=arg)

    def wait(self, fn: str, arg: Any = None, timeout_s: float = 60.0) -> None:
        self._call("wait", timeout_s + COMMAND_SLACK_S, fn=fn, arg=arg, timeout_ms=timeout_s * 1e3)

    def upload(self, selector: str, path: Path) -> None:
        self._call("upload", selector=selector, path=str(path))

    def reload(self) -> None:
        self._call("reload", LAUNCH_TIMEOUT_S)

    def resize(self, width_px: int, height_px: int, scale: float) -> tuple[int, int]:
        """The viewport for this page and the next ones opened; returns it (CSS px)."""
        self._call("viewport", width=width_px, height=height_px, scale=scale)
        return width_px, height_px

    def screenshot(self, path: Path) -> None:
        save_png(base64.b64decode(self._call("screenshot", LAUNCH_TIMEOUT_S)), path)

    def product_errors(self) -> list[str]:
        return [text for text in self.errors if not is_firefox_socket_not_opened(text)]

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._call("close")
        except (BrowserError, BrokenPipeError):
            self._proc.kill()
        self._proc.wait(timeout=30)
        self._proc = None


# WebKit has no console events without BiDi: the page's errors are collected by a listener
# put in after each load (errors before it are not seen; the visible text still is).
ERROR_COLLECTOR = """
if (!window.__edgesightErrors) {
  const errors = (window.__edgesightErrors = []);
  addEventListener("error", (event) => errors.push(`pageerror: ${event.message}`));
  addEventListener("unhandledrejection", (event) => errors.push(`unhandled: ${event.reason}`));
  const original = console.error;
  console.error = (...args) => { errors.push(args.join(" ")); original(...args); };
}
"""


def minibrowser() -> Path:
    for folder in MINIBROWSER_DIRS:
        if (folder / "MiniBrowser").is_file():
            return folder / "MiniBrowser"
    raise BrowserError(
        f"expected WebKitGTK's MiniBrowser in one of {[str(d) for d in MINIBROWSER_DIRS]} "
        "(apt-get install webkit2gtk-driver)"
    )


def save_png(png: bytes, path: Path) -> None:
    """A browser's PNG screenshot at ``path``, as JPEG when its name says so."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        path.write_bytes(png)
        return
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(path, quality=82)


@contextmanager
def xvfb_display(screen: str = "1280x800x24") -> Iterator[str]:
    """An X display of our own (``screen``: WIDTHxHEIGHTxDEPTH): Xvfb picks a free number
    and writes it to a pipe."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise BrowserError(f"Xvfb exited with {proc.wait()} before choosing a display")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class WebKitSession:
    """WebKitGTK's MiniBrowser through WebKitWebDriver (Selenium) on ``display``."""

    display: str
    name: str = "webkit"
    _driver: Any = None

    def launch(self) -> WebKitSession:
        from selenium import webdriver
        from selenium.webdriver.webkitgtk.options import Options
        from selenium.webdriver.webkitgtk.service import Service

        options = Options()
        options.binary_location = str(minibrowser())
        for arg in WEBKIT_ARGS:
            options.add_argument(arg)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        service = Service(
            executable_path=WEBKIT_DRIVER,  # given: Selenium must not look for a driver online
            port=port,
            env={**os.environ, "DISPLAY": self.display},
        )
        self._driver = webdriver.WebKitGTK(options=options, service=service)
        # The page's main thread is busy for tens of seconds while Pyodide starts in WebKit
        # on a loaded machine; WebDriver's scripts and page loads wait for it.
        self._driver.set_script_timeout(WEBKIT_BUSY_PAGE_S)
        self._driver.set_page_load_timeout(WEBKIT_BUSY_PAGE_S)
        return self

    def open(self, url: str) -> None:
        self._driver.get(url)
        self._driver.execute_script(ERROR_COLLECTOR)

    def evaluate(self, fn: str, arg: Any = None) -> Any:
        return self._driver.execute_script(f"return ({fn})(arguments[0]);", arg)

    def wait(self, fn: str, arg: Any = None, timeout_s: float = 60.0) -> None:
        # Polls inside the page (one WebDriver call), like Playwright's wait_for_function.
        self._driver.set_script_timeout(timeout_s + COMMAND_SLACK_S)
        outcome = self._driver.execute_async_script(
            f"""const [arg, timeoutMs, done] = arguments;
            const check = {fn};
            const deadline = performance.now() + timeoutMs;
            const poll = async () => {{
              let value = false;
              try {{ value = await check(arg); }} catch (err) {{ value = false; }}
              if (value) done("ok");
              else if (performance.now() > deadline) done("timeout");
              else setTimeout(poll, 100);
            }};
            poll();""",
            arg,
            timeout_s * 1e3,
        )
        if outcome != "ok":
            raise BrowserError(f"webkit: waited {timeout_s} s for {fn.strip()[:200]}")

    def upload(self, selector: str, path: Path) -> None:
        from selenium.webdriver.common.by import By

        self._driver.find_element(By.CSS_SELECTOR, selector).send_keys(str(path))

    def reload(self) -> None:
        self._driver.refresh()
        self._driver.execute_script(ERROR_COLLECTOR)

    def resize(self, width_px: int, height_px: int, scale: float) -> tuple[int, int]:
        """Sizes the window so that its viewport is ``width_px`` x ``height_px`` where the
        window may be that size; returns the viewport it got (``scale`` is always 1 here)."""
        del scale  # WebKitGTK on Xvfb has no device-pixel-ratio emulation
        viewport = "return [window.innerWidth, window.innerHeight];"
        self._driver.set_window_size(width_px, height_px)
        got_width, got_height = self._driver.execute_script(viewport)
        # The window's frame and toolbar take some of it: grow it by what they took, once.
        # (A window held wider than asked by its minimum stays so.)
        self._driver.set_window_size(
            width_px + max(0, width_px - got_width), height_px + max(0, height_px - got_height)
        )
        got_width, got_height = self._driver.execute_script(viewport)
        return int(got_width), int(got_height)

    def screenshot(self, path: Path) -> None:
        save_png(self._driver.get_screenshot_as_png(), path)

    def product_errors(self) -> list[str]:
        return list(self._driver.execute_script("return window.__edgesightErrors || [];"))

    def close(self) -> None:
        if self._driver is not None:
            self._driver.quit()
            self._driver = None
