// Service worker: keeps the page, runtimes, Python client and model so that a kiosk comes
// up and detects locally even when the web app is unreachable. The web app fills in the
// manifest (cache version + URLs) when it serves this file.
//
// Every kept file is served from ONE cache named by the version of all of them together,
// so a page never mixes old scripts with a new Python bundle: a deploy changes this file
// (its version), the browser installs it with a complete new cache, and on activation the
// page reloads itself (app.js, on "controllerchange") and gets the new set as a whole.

const MANIFEST = __EDGESIGHT_MANIFEST__;
const CACHE = `edgesight-${MANIFEST.version}`;
const KEPT = new Set(MANIFEST.urls);

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // Versioned runtime URLs may come from the HTTP cache; everything else is revalidated.
    await cache.addAll(MANIFEST.urls.map((url) => new Request(url, {
      cache: url.startsWith("/vendor/") ? "default" : "no-cache",
    })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith("edgesight-") && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

async function fromVersion(request) {
  const cached = await caches.match(request, { cacheName: CACHE, ignoreSearch: true });
  return cached || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (KEPT.has(url.pathname)) event.respondWith(fromVersion(event.request));
});
