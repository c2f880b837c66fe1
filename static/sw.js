// Service worker: keeps the page, runtimes, Python client and model so that a kiosk comes
// up and detects locally even when the web app is unreachable. The web app fills in the
// manifest (cache version + URLs) when it serves this file.

const MANIFEST = __EDGESIGHT_MANIFEST__;
const CACHE = `edgesight-${MANIFEST.version}`;
const NETWORK_FIRST = new Set(MANIFEST.network_first);

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

async function networkFirst(request) {
  try {
    const response = await fetch(request);
    if (response.ok) (await caches.open(CACHE)).put(request, response.clone());
    return response;
  } catch (err) {
    const cached = await caches.match(request, { cacheName: CACHE });
    if (cached) return cached;
    throw err;
  }
}

async function cacheFirst(request) {
  const cached = await caches.match(request, { cacheName: CACHE });
  return cached || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (NETWORK_FIRST.has(url.pathname)) event.respondWith(networkFirst(event.request));
  else if (MANIFEST.urls.includes(url.pathname)) event.respondWith(cacheFirst(event.request));
});
