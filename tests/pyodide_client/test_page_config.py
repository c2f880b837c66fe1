"""pyodide_client.page_config: the page's settings, typed and checked once."""

from __future__ import annotations

import pytest

from pyodide_client.page_config import ModelFile, PageConfig, PageTiming, TraceConfig
from pyodide_client.page_origin import PageOrigin
from pyodide_client.postprocess import PostprocessSettings


def test_an_empty_config_takes_every_default() -> None:
    assert PageConfig.parse({}) == PageConfig()
    assert PageConfig().max_in_flight == 0  # the web app's default: K adapts per link


def test_every_key_is_read() -> None:
    config = PageConfig.parse(
        {
            "node_urls": ["ws://a:8001/ws"],
            "max_in_flight": 3,
            "local_threads": 2,
            "browser_backend": "wasm",
            "local_load_deadline_ms": 5000,
            "frame_encoding": "jpeg",
            "target_fps": 15,
            "postprocess": {"score_threshold": 0.8, "multi_label": True},
            "trace": {"url": "/api/trace", "sample_rate": 0.5},
            "token_url": "/api/token",
            "model": {
                "name": "m",
                "local": {"name": "m-int8", "sha256": "ab", "variant_of": "cd", "io": {"w": 1}},
            },
            "kiosk": True,
            "kiosk_in_view": True,
            "kiosk_source_url": "/kiosk/source",
            "page": {"protocol": "https:", "hostname": "h", "is_secure_context": True},
        }
    )
    assert config.node_urls == ("ws://a:8001/ws",)
    assert (config.max_in_flight, config.local_threads, config.browser_backend) == (3, 2, "wasm")
    assert (config.frame_encoding, config.target_fps) == ("jpeg", 15.0)
    assert config.local_load_deadline_ms == 5000.0
    assert config.postprocess == PostprocessSettings(score_threshold=0.8, multi_label=True)
    assert config.trace == TraceConfig("/api/trace", 0.5)
    assert config.token_url == "/api/token"
    assert config.model.local == ModelFile("", "m-int8", "ab", "cd", {"w": 1})
    assert config.model.local_webgpu is None
    assert (config.kiosk, config.kiosk_in_view, config.kiosk_source_url) == (
        True,
        True,
        "/kiosk/source",
    )
    assert config.page == PageOrigin("https:", "h", "", True)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"max_in_flight": "2"}, "max_in_flight: expected a whole number 0..64, got '2'"),
        ({"max_in_flight": 65}, "max_in_flight: expected a whole number 0..64, got 65"),
        ({"max_in_flight": True}, "max_in_flight: expected a whole number 0..64, got True"),
        ({"local_threads": 17}, "local_threads: expected a whole number 0..16, got 17"),
        ({"browser_backend": "gpu"}, "browser_backend: expected one of auto, webgpu, wasm"),
        ({"frame_encoding": "png"}, "frame_encoding: expected one of auto, raw, jpeg, webp"),
        ({"target_fps": 0}, "target_fps: expected a number > 0, got 0"),
        ({"node_urls": "ws://a/ws"}, "node_urls: expected a list of strings"),
        ({"kiosk": "yes"}, "kiosk: expected true or false, got 'yes'"),
        ({"token_url": 1}, "token_url: expected a string, got 1"),
        ({"postprocess": {"colour": "red"}}, "postprocess: unknown key 'colour'"),
        ({"postprocess": [1]}, "postprocess: expected an object"),
        ({"trace": {"url": "/t", "sample_rate": 2}}, "trace.sample_rate: expected 0..1"),
        ({"model": {"local": {"variant_of": 1}}}, "model.local.variant_of: expected a string"),
        ({"max_inflight": 2}, "root: unknown key 'max_inflight'; expected one of node_urls"),
        ([], "root: expected an object"),
    ],
)
def test_a_wrong_value_names_its_key_what_was_expected_and_what_came(
    given: object, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^page config {message}".replace("(", r"\(")):
        PageConfig.parse(given)


def test_the_page_timing_is_read_and_checked() -> None:
    given = {**PageTiming().to_json(), "registry_poll_ms": 500}
    assert PageConfig.parse({"timing": given}).timing.registry_poll_ms == 500.0
    assert PageConfig.parse({"timing": {}}).timing == PageTiming()
    with pytest.raises(
        ValueError, match=r"^page config timing.view_poll_ms: expected a number > 0"
    ):
        PageConfig.parse({"timing": {"view_poll_ms": 0}})
    with pytest.raises(ValueError, match=r"^page config timing: unknown key 'poll_ms'"):
        PageConfig.parse({"timing": {"poll_ms": 1}})
