"""What the end-to-end tests read from the page, in one place (issues 18, 19).

Page functions as source text, each taking at most one argument, for any driver (Playwright's
``evaluate``/``wait_for_function``, puppeteer-core, Selenium). Most read what a person sees
(visible text, labels, ink on the overlay); the rest reads the page's documented API
(``window.edgesight.api``, docs/page-api.md), never its internal fields.
"""

from __future__ import annotations

__all__ = [
    "API_READY",
    "BOXES_DRAWN",
    "DRAWN_AFTER",
    "FIRST_SEEN",
    "FRAMES_DRAWN",
    "LABEL_SHOWN",
    "LOCAL_READY",
    "OFFLINE_CACHE_READY",
    "OVERLAY_HAS_INK",
    "OVERLAY_LABELS",
    "STATE",
    "VISIBLE_TEXT",
    "WATCH_FIRST",
]

# The page API is there (its Python runtime has started).
API_READY = """() => Boolean(window.edgesight && window.edgesight.api)"""

# What the page shows now: the API's state() (docs/page-api.md); null before the API is up.
STATE = """() => window.edgesight && window.edgesight.api
    ? window.edgesight.api.state() : null"""

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

# How many results were drawn from ``mode`` ("node" or "local"), through the page API
# (docs/page-api.md: ``api.drawn``, by where: "server" or "browser").
FRAMES_DRAWN = """(mode) => {
    const api = window.edgesight && window.edgesight.api;
    return api ? api.drawn[mode === "node" ? "server" : "browser"] : 0;
}"""

# More than ``after`` results drawn from ``mode``, the newest of them from ``mode`` and with
# ``label`` (``label`` null: any result at all); page API only.
BOXES_DRAWN = """([mode, label, after]) => {
    const api = window.edgesight && window.edgesight.api;
    const where = mode === "node" ? "server" : "browser";
    const last = api && api.lastDetections;
    return Boolean(api && api.drawn[where] > after && last && last.where === where
        && (label === null || last.objects.some((o) => o.label === label)));
}"""

# In-browser detection has loaded its model (a node's loss switches at once); page API.
LOCAL_READY = """() => Boolean(window.edgesight && window.edgesight.api
    && window.edgesight.api.state().browser_engine === "ready")"""

# The service worker controls the page and holds its versioned cache (offline kiosk).
OFFLINE_CACHE_READY = """async () => {
    const registration = await navigator.serviceWorker.ready;
    if (!registration.active || navigator.serviceWorker.controller === null) return false;
    return (await caches.keys()).some((name) => name.startsWith("edgesight-"));
}"""

# The newest drawn result came from ``where`` ("server" or "browser"), from the server named
# ``server`` (null: any), and was drawn after ``mark_ms`` (the page's performance.now()).
DRAWN_AFTER = """([where, server, markMs]) => {
    const last = window.edgesight && window.edgesight.api
        && window.edgesight.api.lastDetections;
    return Boolean(last && last.where === where && last.drawn_ms > markMs
        && (server === null || last.server === server));
}"""

# The labels the overlay shows now, as drawn (docs/page-api.md: ``api.overlay()``).
OVERLAY_LABELS = """() => window.edgesight && window.edgesight.api
    ? window.edgesight.api.overlay().labels : []"""

# Keep the first ``edgesight:<name>`` event from now on whose detail has ``where`` (null: any),
# for FIRST_SEEN to read: watch before the cause (a node killed or started), so that no
# event is missed between the cause and the wait. A later watch of the same name replaces it.
WATCH_FIRST = """([name, where]) => {
    const seen = window.pageApiSeen = window.pageApiSeen || {};
    const token = {};
    seen[name] = { token, detail: null };
    const watch = (event) => {
        if (seen[name].token !== token) {
            removeEventListener(`edgesight:${name}`, watch);
            return;
        }
        if (where !== null && event.detail.where !== where) return;
        seen[name].detail = event.detail;
        removeEventListener(`edgesight:${name}`, watch);
    };
    addEventListener(`edgesight:${name}`, watch);
}"""

# The event WATCH_FIRST kept for ``name`` (its detail), or null while none came.
FIRST_SEEN = """(name) => {
    const seen = window.pageApiSeen && window.pageApiSeen[name];
    return seen ? seen.detail : null;
}"""
