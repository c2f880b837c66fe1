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

// A navigation asks the web app first (issue 18): a signed-out or expired browser gets its
// redirect to the sign-in form (or its 401), never the kept page, and a signed-in one the
// page as it is now. Only when the web app cannot be reached is the kept page served (an
// offline kiosk), or when it has not answered within NAVIGATION_WAIT_MS (a network that
// drops packets rather than refusing). Scripts and runtimes still come from the kept version.
const NAVIGATION_WAIT_MS = 5000;
const KIOSK_PAGES = new Set(["/kiosk"]);

async function navigation(request) {
  const kept = () => caches.match(request, { cacheName: CACHE, ignoreSearch: true });
  const answer = fetch(request);
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(resolve, NAVIGATION_WAIT_MS, null); });
  try {
    const response = await Promise.race([answer, late]);
    if (response && response.status === 401 && KIOSK_PAGES.has(new URL(request.url).pathname)) {
      // An unattended kiosk whose session ended (an in-memory session store restarted):
      // it has no sign-in form to show and nobody to read one, so it keeps its kept page
      // and detects in the browser (no tokens) until its start URL signs it in again.
      return (await kept()) || response;
    }
    if (response) return response;
    return (await kept()) || (await answer);
  } catch (err) {
    const cached = await kept();
    if (cached) return cached;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!KEPT.has(url.pathname)) return;
  event.respondWith(event.request.mode === "navigate" ? navigation(event.request) : fromVersion(event.request));
});
