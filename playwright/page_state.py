"""What the end-to-end tests read from the page, in one place (issue 18).

Page functions as source text, each taking one argument, for any driver (Playwright's
``evaluate``/``wait_for_function``, puppeteer-core, Selenium). Most read what a person sees
(visible text, labels, ink on the overlay). A few read the page's internal fields
(``window.edgesight.timings``, ``lastBoxes``, ``client.local``) because the page offers no
stable API for "a frame was drawn from this path" yet: when it does, only this module changes.
"""

from __future__ import annotations

__all__ = [
    "BOXES_DRAWN",
    "FRAMES_DRAWN",
    "LABEL_SHOWN",
    "LOCAL_READY",
    "OFFLINE_CACHE_READY",
    "OVERLAY_HAS_INK",
    "VISIBLE_TEXT",
]

# The element's text as shown, or null while it is missing or not rendered.
VISIBLE_TEXT = """(selector) => {
    const element = document.querySelector(selector);
    return element && element.getClientRects().length > 0 ? element.innerText.trim() : null;
}"""

# A label for ``label`` is listed beside the video (and rendered).
LABEL_SHOWN = """(label) => Array.from(document.querySelectorAll("#detections li"))
    .some((item) => item.dataset.label === label && item.getClientRects().length > 0)"""

# Some box is drawn on the overlay canvas.
OVERLAY_HAS_INK = """() => {
    const canvas = document.getElementById("overlay");
    if (!canvas || canvas.width === 0 || canvas.height === 0) return false;
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
}"""

# Internal: how many frames were drawn from ``mode`` ("node" or "local").
FRAMES_DRAWN = """(mode) => {
    const e = window.edgesight;
    return e ? e.timings.filter((t) => t.mode === mode).length : 0;
}"""

# Internal: more than ``after`` frames drawn from ``mode``, the last of them with ``label``
# (``label`` null: any result at all).
BOXES_DRAWN = """([mode, label, after]) => {
    const e = window.edgesight;
    return Boolean(e && e.timings.filter((t) => t.mode === mode).length > after
        && (label === null || (e.lastBoxes[mode] || []).some((b) => b.label === label)));
}"""

# Internal: in-browser detection has loaded its model (a node's loss switches at once).
LOCAL_READY = """() => Boolean(window.edgesight && window.edgesight.client.local.is_ready)"""

# The service worker controls the page and holds its versioned cache (offline kiosk).
OFFLINE_CACHE_READY = """async () => {
    const registration = await navigator.serviceWorker.ready;
    if (!registration.active || navigator.serviceWorker.controller === null) return false;
    return (await caches.keys()).some((name) => name.startsWith("edgesight-"));
}"""
