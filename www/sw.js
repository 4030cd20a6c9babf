// Sprig's service worker: the app shell, offline.
//
// scripts/pwa-build writes dist/sw.js from this file, filling BUILD with the
// build's version and its shell (every file of the build but models/ and
// models.json, each but
// index.html with its SRI hash; index.html is checked to name only files of
// that shell). Each version precaches its shell into its own cache,
// `sprig-shell-<version>`, and serves it cache-first; a new version installs
// beside the running one and waits until the page asks for it (the page's
// "new version — reload" prompt posts SKIP_WAITING), then deletes the older
// caches as it activates.
//
// The model catalog, models.json, is not in the shell: a deployer edits it
// without a rebuild (so it has no build hash to check, and must not stay
// stale). It is served network-first: each start fetches it (revalidated
// past the HTTP cache) and keeps the answer in its own cache,
// `sprig-catalog`, which versions share; offline, or when the network has
// not answered within CATALOG_WAIT_MS, the kept copy answers. Installing a
// version stores it too (best effort), so an app installed and then taken
// offline still lists its models.
//
// Left to the network, never cached here: model files (the worker's model
// store in OPFS owns them), Range requests, anything but GET, other origins,
// and anything not in the shell.

'use strict';

const BUILD = /* sprig-build */ { "version": "dev", "shell": [] } /* /sprig-build */;

const PREFIX = 'sprig-shell-';
const CACHE = PREFIX + BUILD.version;
const SCOPE = new URL('./', self.location.href);
const INDEX = new URL('./index.html', SCOPE).href;
const SHELL = new Set(BUILD.shell.map((f) => new URL(f.url, SCOPE).href));
const CATALOG = new URL('./models.json', SCOPE).href;
const CATALOG_CACHE = 'sprig-catalog';
const CATALOG_WAIT_MS = 5000;

self.addEventListener('install', (event) => {
  // No skipWaiting() here: a new version never takes over a page on its own.
  event.waitUntil(Promise.all([precache(), fetchCatalog().catch(() => {})]));
});

/** Fetches models.json past the HTTP cache; keeps a good answer. */
async function fetchCatalog() {
  const response = await fetch(new Request(CATALOG, { cache: 'no-cache' }));
  if (response.ok) {
    const cache = await caches.open(CATALOG_CACHE);
    await cache.put(CATALOG, response.clone());
  }
  return response;
}

/**
 * models.json, network-first: the network's answer (a 404 too: the deployer
 * removed it), or the kept copy when the network fails or is slow.
 */
async function catalog() {
  const kept = await (await caches.open(CATALOG_CACHE)).match(CATALOG);
  const network = fetchCatalog();
  if (!kept) return network;
  const late = new Promise((resolve) => setTimeout(resolve, CATALOG_WAIT_MS, kept));
  return Promise.race([network.catch(() => kept), late]);
}

async function precache() {
  const cache = await caches.open(CACHE);
  // Every file's fetch and put end before the cache is judged: deleting it
  // while some were still in flight let a late put bring it back.
  const results = await Promise.allSettled(
    BUILD.shell.map(async ({ url, integrity }) => {
      // Past the HTTP cache, and checked against the build's own hashes: a
      // shell mixing two deployments fails to install and is retried later.
      const request = new Request(new URL(url, SCOPE), { cache: 'no-cache', integrity: integrity ?? '' });
      let response = await fetch(request);
      if (!response.ok) throw new Error(`cannot precache ${url}: HTTP ${response.status}`);
      // The page has no hash to check (see BUILD): it must at least be this
      // build's, naming only this build's scripts, styles and wasm.
      if (request.url === INDEX && !namesThisBuild(await response.clone().text())) {
        throw new Error('index.html names files of another build: the shell is not installed');
      }
      // A redirected response cannot answer a navigation: keep its bytes only.
      if (response.redirected) {
        response = new Response(await response.blob(), { status: response.status, headers: response.headers });
      }
      await cache.put(request.url, response);
    }),
  );
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await caches.delete(CACHE);
    throw failed.reason;
  }
}

/**
 * Whether the page `html` belongs to this build: every script, style and
 * wasm file it names (the app, its styles, the worker loaders) is in this
 * version's shell.
 */
function namesThisBuild(html) {
  const named = [...html.matchAll(/(?:src|href|content)="([^"]+)"|from '([^']+)'/g)].map((m) => m[1] ?? m[2]);
  const files = named.filter((u) => /\.(?:js|wasm|css)$/.test(u)).map((u) => new URL(u, SCOPE).href);
  return files.length > 0 && files.every((f) => SHELL.has(f));
}

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
      }
      // The first visit's page is controlled at once (later ones already are).
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('message', (event) => {
  const type = event.data?.type;
  if (type === 'SKIP_WAITING') {
    self.skipWaiting();
  } else if (type === 'VERSION') {
    event.ports[0]?.postMessage(BUILD.version);
  }
});

self.addEventListener('fetch', (event) => {
  if (isCatalog(event.request)) return event.respondWith(catalog());
  const key = shellKey(event.request);
  if (key) event.respondWith(fromShell(key, event.request));
});

/** Whether `request` asks for the app's models.json (whatever its query). */
function isCatalog(request) {
  if (request.method !== 'GET' || request.headers.has('range')) return false;
  const url = new URL(request.url);
  url.search = '';
  url.hash = '';
  return url.href === CATALOG;
}

/** The cache key answering `request`, or null when the network should. */
function shellKey(request) {
  if (request.method !== 'GET' || request.headers.has('range')) return null;
  const url = new URL(request.url);
  if (url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return null;
  const path = url.pathname.slice(SCOPE.pathname.length);
  if (path.startsWith('models/')) return null;
  // The app has one page: any navigation to it, whatever its query, is index.html.
  if (request.mode === 'navigate' && (path === '' || path === 'index.html')) return INDEX;
  url.hash = '';
  return url.search === '' && SHELL.has(url.href) ? url.href : null;
}

async function fromShell(key, request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(key);
  if (!hit) return fetch(request);
  return key === INDEX ? framedAs(hit, request) : hit;
}

/**
 * The page with the frame-ancestors its address calls for, whatever the
 * cached copy was fetched with: any site may frame the widget view
 * (`?embed=1`), none the full app.
 */
function framedAs(page, request) {
  const embed = new URL(request.url).searchParams.get('embed') === '1';
  const headers = new Headers(page.headers);
  headers.set('content-security-policy', `frame-ancestors ${embed ? '*' : "'none'"}`);
  return new Response(page.body, { status: page.status, statusText: page.statusText, headers });
}
