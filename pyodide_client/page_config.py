"""The page's configuration, typed and read once (issue 19).

The web app (``webapp/app.py``) writes the page's settings as JSON into the page; the
page's JavaScript adds ``page`` (its ``location`` and ``isSecureContext``) and hands the
text to ``BrowserClient``, which parses it here once and passes the parts to the modules
that need them. Every key has one default, here; an unknown key or a value of the wrong
kind is an error naming the key, what was expected and what came, so that a key the web
app renames cannot silently fall back to a default.

Keys JavaScript alone reads (the runtimes' URLs, the model files' ``url`` and ``io``) are
parsed too, so that one list names everything the page is
handed. Stdlib only: runs in Pyodide and in CPython tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar

from .backend_choice import SETTINGS as BROWSER_BACKENDS
from .encoding import MODES as FRAME_ENCODINGS
from .page_origin import PageOrigin
from .postprocess import PostprocessSettings
from .transport import POLICIES as TRANSPORT_POLICIES

__all__ = ["KEYS", "ModelFile", "PageConfig", "PageModel", "PageTiming", "TraceConfig"]

_T = TypeVar("_T")

# The operator's post-processing settings the page applies to in-browser results.
_POSTPROCESS_KEYS = (
    "score_threshold",
    "iou_threshold",
    "cross_class_iou_threshold",
    "max_detections",
    "multi_label",
)


class _Reader:
    """Typed reads from one JSON object, each error naming the key's full path."""

    def __init__(self, data: object, path: str, known: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"page config {path or 'root'}: expected an object, got {data!r}")
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ValueError(
                f"page config {path or 'root'}: unknown key {unknown[0]!r}; expected one of "
                f"{', '.join(known)}"
            )
        self.data = data
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str, default: _T) -> _T:
        value = self.data.get(key, default)
        # bool is an int to Python, never to the page's JSON: refuse it where a number goes
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"page config {self._name(key)}: expected {expected}, got {value!r}")
        return value  # type: ignore[return-value]

    def text(self, key: str, default: str = "") -> str:
        return self._typed(key, (str,), "a string", default)

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        return None if value is None else self.text(key)

    def flag(self, key: str, default: bool = False) -> bool:
        return self._typed(key, (bool,), "true or false", default)

    def whole(self, key: str, default: int, low: int, high: int) -> int:
        value = self._typed(key, (int,), f"a whole number {low}..{high}", default)
        if not low <= value <= high:
            raise ValueError(
                f"page config {self._name(key)}: expected a whole number {low}..{high}, "
                f"got {value!r}"
            )
        return value

    def number(self, key: str, default: float, positive: bool = False) -> float:
        expected = "a number > 0" if positive else "a number"
        value = float(self._typed(key, (int, float), expected, default))
        if positive and not 0 < value < float("inf"):
            raise ValueError(f"page config {self._name(key)}: expected {expected}, got {value!r}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise ValueError(
                f"page config {self._name(key)}: expected one of {', '.join(choices)}, "
                f"got {value!r}"
            )
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(
                f"page config {self._name(key)}: expected a list of strings, got {value!r}"
            )
        return tuple(value)

    def child(self, key: str, known: tuple[str, ...]) -> _Reader | None:
        value = self.data.get(key)
        return None if value is None else _Reader(value, self._name(key), known)


@dataclass(frozen=True)
class ModelFile:
    """A model file the in-browser engine may run (``model.local``, ``model.local_webgpu``):
    ``variant_of`` is the sha256 of the model an INT8 variant was quantised from."""

    url: str = ""
    name: str = ""
    sha256: str = ""
    variant_of: str | None = None
    io: Mapping[str, object] = field(default_factory=dict)  # names and size, for the worker

    @classmethod
    def parse(cls, reader: _Reader | None) -> ModelFile | None:
        if reader is None:
            return None
        io = reader.data.get("io", {})
        if not isinstance(io, Mapping):
            raise ValueError(f"page config {reader.path}.io: expected an object, got {io!r}")
        return cls(
            url=reader.text("url"),
            name=reader.text("name"),
            sha256=reader.text("sha256"),
            variant_of=reader.optional_text("variant_of"),
            io=dict(io),
        )


_MODEL_FILE_KEYS = tuple(f.name for f in fields(ModelFile))


@dataclass(frozen=True)
class PageModel:
    """The node's model as the page fetches its card, and the files it runs itself."""

    name: str = ""
    sha256: str = ""
    url: str = ""
    card_url: str = ""
    local: ModelFile | None = None  # Wasm runs this one (an INT8 variant when offered)
    local_webgpu: ModelFile | None = None  # WebGPU runs the float model

    @classmethod
    def parse(cls, reader: _Reader | None) -> PageModel:
        if reader is None:
            return cls()
        return cls(
            name=reader.text("name"),
            sha256=reader.text("sha256"),
            url=reader.text("url"),
            card_url=reader.text("card_url"),
            local=ModelFile.parse(reader.child("local", _MODEL_FILE_KEYS)),
            local_webgpu=ModelFile.parse(reader.child("local_webgpu", _MODEL_FILE_KEYS)),
        )


@dataclass(frozen=True)
class TraceConfig:
    """Where sampled frames' traces go (issue 12); absent: the page traces none."""

    url: str
    sample_rate: float

    @classmethod
    def parse(cls, reader: _Reader | None) -> TraceConfig | None:
        if reader is None:
            return None
        rate = reader.number("sample_rate", 0.0)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"page config trace.sample_rate: expected 0..1, got {rate!r}")
        url = reader.text("url")
        if not url:
            raise ValueError("page config trace.url: expected a URL, got ''")
        return cls(url, rate)


@dataclass(frozen=True)
class PageTiming:
    """The page's own periods and retries, which JavaScript's timers follow (issue 19: no
    timing constant in app.js). They come with the page's config because some run before
    Python has loaded (a kiosk reloads when the runtime cannot start)."""

    registry_poll_ms: float = 2_000.0  # GET the node list
    report_period_ms: float = 10_000.0  # POST what the user sees (webapp/report.py's limit)
    view_poll_ms: float = 500.0  # redraw the status line and stats from view()
    camera_retry_ms: float = 2_000.0  # after a camera failure other than a refusal
    kiosk_camera_retry_ms: float = 5_000.0  # a kiosk retries even a refusal: nobody clicks
    camera_ended_retry_ms: float = 1_000.0  # the camera's stream ended (unplugged)
    local_start_check_ms: float = 1_500.0  # start in-browser detection while no node has the page
    kiosk_reload_ms: float = 10_000.0  # a kiosk that could not start, or crashed, reloads

    @classmethod
    def parse(cls, reader: _Reader | None) -> PageTiming:
        if reader is None:
            return cls()
        defaults = cls()
        return cls(
            **{
                name: reader.number(name, getattr(defaults, name), positive=True)
                for name in _TIMING_KEYS
            }
        )

    def to_json(self) -> dict[str, float]:
        """As the web app writes it into the page (``timing``)."""
        return {name: getattr(self, name) for name in _TIMING_KEYS}


_TIMING_KEYS = tuple(f.name for f in fields(PageTiming))


@dataclass(frozen=True)
class PageConfig:
    """Everything the web app hands the page, with the one default for each key."""

    node_urls: tuple[str, ...] = ()  # may hold {hostname} (node_url.py)
    # Frames in flight per link: 0 lets each link adapt K (issue 16), 1..64 pin it.
    max_in_flight: int = 0
    local_threads: int = 0  # Wasm threads for in-browser detection; 0: the page decides
    browser_backend: str = "auto"  # auto | webgpu | wasm (issue 20)
    local_load_deadline_ms: float = 30_000.0
    frame_encoding: str = "auto"  # auto | raw | jpeg | webp (issue 9)
    transport: str = "auto"  # auto (measured per link) | quic | websocket (issue 16)
    target_fps: float = 30.0
    postprocess: PostprocessSettings = field(default_factory=PostprocessSettings)
    pyodide_url: str = ""
    ort_url: str = ""
    client_zip_url: str = ""
    registry_url: str = ""  # empty: no node registry, only node_urls
    report_url: str = ""
    trace: TraceConfig | None = None
    token_url: str | None = None  # None: anonymous streams (issue 8)
    model: PageModel = field(default_factory=PageModel)
    kiosk: bool = False
    kiosk_in_view: bool = False
    kiosk_source_url: str | None = None
    timing: PageTiming = field(default_factory=PageTiming)
    page: PageOrigin = field(default_factory=PageOrigin)  # added by the page's JavaScript

    @classmethod
    def parse(cls, data: object) -> PageConfig:
        """From the page's JSON object; raises ValueError naming the key that is wrong."""
        read = _Reader(data, "", KEYS)
        post = read.child("postprocess", _POSTPROCESS_KEYS)
        return cls(
            node_urls=read.texts("node_urls"),
            max_in_flight=read.whole("max_in_flight", cls.max_in_flight, 0, 64),
            local_threads=read.whole("local_threads", cls.local_threads, 0, 16),
            browser_backend=read.choice("browser_backend", cls.browser_backend, BROWSER_BACKENDS),
            local_load_deadline_ms=read.number(
                "local_load_deadline_ms", cls.local_load_deadline_ms, positive=True
            ),
            frame_encoding=read.choice("frame_encoding", cls.frame_encoding, FRAME_ENCODINGS),
            transport=read.choice("transport", cls.transport, TRANSPORT_POLICIES),
            target_fps=read.number("target_fps", cls.target_fps, positive=True),
            postprocess=_postprocess(post),
            pyodide_url=read.text("pyodide_url"),
            ort_url=read.text("ort_url"),
            client_zip_url=read.text("client_zip_url"),
            registry_url=read.text("registry_url"),
            report_url=read.text("report_url"),
            trace=TraceConfig.parse(read.child("trace", ("url", "sample_rate"))),
            token_url=read.optional_text("token_url"),
            model=PageModel.parse(
                read.child("model", ("name", "sha256", "url", "card_url", "local", "local_webgpu"))
            ),
            kiosk=read.flag("kiosk"),
            kiosk_in_view=read.flag("kiosk_in_view"),
            kiosk_source_url=read.optional_text("kiosk_source_url"),
            timing=PageTiming.parse(read.child("timing", _TIMING_KEYS)),
            page=PageOrigin.from_mapping(read.data.get("page")),
        )


KEYS = tuple(f.name for f in fields(PageConfig))  # every key the page may be handed


def _postprocess(reader: _Reader | None) -> PostprocessSettings:
    if reader is None:
        return PostprocessSettings()
    defaults = PostprocessSettings()
    return PostprocessSettings(
        score_threshold=reader.number("score_threshold", defaults.score_threshold),
        iou_threshold=reader.number("iou_threshold", defaults.iou_threshold),
        cross_class_iou_threshold=reader.number(
            "cross_class_iou_threshold", defaults.cross_class_iou_threshold
        ),
        max_detections=reader.whole("max_detections", defaults.max_detections, 1, 100_000),
        multi_label=reader.flag("multi_label", defaults.multi_label),
    )
