// The installable offline app, end to end: the built dist/ served over HTTP,
// Debian Chromium driven by Playwright. After one visit the service worker
// holds the app shell: offline, the app opens, its worker runs, the stored
// demo model loads and answers. A new build is installed beside the running
// one and offered with a prompt, taken only when asked and never while a reply
// is being written. The manifest, icons and service worker meet Chromium's
// install criteria.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { CHROMIUM, collectErrors, useDistAndBrowser } from './browser.mjs';
import { LOAD_TIMEOUT, openModels, send, setSettings } from './app.mjs';
import { startServer } from '../server.mjs';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DIST = process.env.SPRIG_DIST ?? join(REPO, 'dist');
const DEMO = '/models/SmolLM2-135M-Instruct.Q4_1.manifest.json';
const WORKER_FILE = /^sprig-worker-([0-9a-f]{16})(_loader\.js|\.js|_bg\.wasm)$/;
const env = await useDistAndBrowser();

/** Waits until the service worker controls `page` (its shell is then precached). */
async function controlled(page) {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
}

/** The service worker caches of the page's origin, and the URLs each holds. */
function caches(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const name of await self.caches.keys()) {
      out[name] = (await (await self.caches.open(name)).keys()).map((r) => new URL(r.url).pathname);
    }
    return out;
  });
}

/** The version of the service worker controlling `page`, as it says. */
function swVersion(page) {
  return page.evaluate(
    () =>
      new Promise((ok) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = (e) => ok(e.data);
        navigator.serviceWorker.controller.postMessage({ type: 'VERSION' }, [channel.port2]);
      }),
  );
}

/** The worker loader the page runs, from its sprig-worker meta. */
const workerMeta = (page) => page.evaluate(() => document.querySelector('meta[name="sprig-worker"]').content);

/** The build version and shell list written into a dist's sw.js. */
async function swBuild(dir) {
  const text = await readFile(join(dir, 'sw.js'), 'utf8');
  return JSON.parse(/\/\* sprig-build \*\/([\s\S]*?)\/\* \/sprig-build \*\//.exec(text)[1]);
}

/** Width and height from a PNG's IHDR, or null when `bytes` is no PNG. */
function pngSize(bytes) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (bytes.length < 24 || !bytes.subarray(0, 8).equals(signature) || bytes.toString('latin1', 12, 16) !== 'IHDR') return null;
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

test('the built worker files carry a hash of their content, and the page and loader name them', async () => {
  const names = await readdir(DIST);
  const html = await readFile(join(DIST, 'index.html'), 'utf8');
  const worker = [];
  // Two builds of the worker: simd128 and relaxed SIMD, each versioned on its own.
  for (const name of ['sprig-worker', 'sprig-worker-relaxed']) {
    const file = new RegExp(`^${name}-([0-9a-f]{16})(_loader\\.js|\\.js|_bg\\.wasm)$`);
    const mine = names.filter((n) => file.test(n));
    assert.equal(mine.length, 3, mine.join(' '));
    const hashes = new Set(mine.map((n) => file.exec(n)[1]));
    assert.equal(hashes.size, 1, 'one hash for the three files');
    const [hash] = hashes;
    const loader = await readFile(join(DIST, `${name}-${hash}_loader.js`), 'utf8');
    assert.match(loader, new RegExp(`importScripts\\("\\./${name}-${hash}\\.js"\\)`));
    assert.match(loader, new RegExp(`"\\./${name}-${hash}_bg\\.wasm"`));
    assert.match(html, new RegExp(`<meta name="${name}" content="\\./${name}-${hash}_loader\\.js"`));
    worker.push(...mine);
  }
  assert.deepEqual(names.filter((n) => n.startsWith('sprig-worker')).sort(), worker.sort(), 'versioned worker files only');
  // The precache list is the whole shell, models excepted, each file with its hash.
  const build = await swBuild(DIST);
  assert.match(build.version, /^[0-9a-f]{16}$/);
  const shell = build.shell.map((f) => f.url);
  for (const f of ['./index.html', './manifest.webmanifest', './icons/icon-192.png', './icons/icon-512.png', ...worker.map((n) => `./${n}`)]) {
    assert.ok(shell.includes(f), `${f} is precached: ${shell.join(' ')}`);
  }
  assert.ok(shell.some((f) => /^\.\/sprig-app-.*_bg\.wasm$/.test(f)) && shell.some((f) => /^\.\/styles-.*\.css$/.test(f)));
  assert.ok(!shell.some((f) => f.startsWith('./models/') || f === './models.json' || f === './sw.js'), shell.join(' '));
  for (const f of build.shell) {
    if (f.url === './index.html') assert.equal(f.integrity, undefined, 'trunk serve rewrites index.html as it serves it');
    else assert.match(f.integrity, /^sha256-[A-Za-z0-9+/]{43}=$/, f.url);
  }
});

test('after one visit the app opens offline, lists the stored model, loads it and chats', async () => {
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(env.server.url + '/');
    await page.getByTestId('model-select').selectOption('demo');
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    await controlled(page);

    const seen = env.server.requests.length;
    await context.setOffline(true);
    await page.reload();
    // The shell and the worker come from the service worker's cache.
    await page.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
    await openModels(page);
    const demo = page.locator(`[data-testid="stored-model"][data-url="${env.server.url + DEMO}"]`);
    await page.locator(`[data-testid="stored-model"][data-url="${env.server.url + DEMO}"][data-state="ready"]`).waitFor({ timeout: 30_000 });
    await demo.getByTestId('models-load').click();
    await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    await setSettings(page, { temperature: 0, 'max-tokens': 12 });
    await send(page, 'What is the capital of France?');
    await page.getByTestId('reply-stats').first().waitFor({ timeout: 120_000 });
    assert.ok((await page.locator('[data-testid="message-assistant"] .md').first().textContent()).length > 0);
    // Nothing the page or its worker asked for reached the server. The only
    // request that may is the browser's own update check of sw.js (made by
    // the browser process, which Playwright's offline emulation does not
    // cover; offline for real, it fails and the cached version runs on).
    const reached = env.server.requests.slice(seen).map((r) => `${r.method} ${r.path}`);
    assert.deepEqual(reached.filter((r) => r !== 'GET /sw.js'), [], 'no request reached the server while offline');
    assert.deepEqual(errors, []);
  } finally {
    await context.setOffline(false);
    await context.close();
  }
});

test('the service worker answers the shell from its cache and leaves models, ranges and other requests to the network', async () => {
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(env.server.url + '/');
    await controlled(page);
    await page.getByTestId('model-load').click(); // the demo model, downloaded by the worker
    await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });

    const build = await swBuild(DIST);
    const all = await caches(page);
    assert.deepEqual(Object.keys(all).sort(), ['sprig-catalog', `sprig-shell-${build.version}`]);
    assert.deepEqual(all[`sprig-shell-${build.version}`].sort(), build.shell.map((f) => f.url.slice(1)).sort(), 'the shell, nothing else');
    // The model catalog is kept apart from any version's shell (catalog.test.mjs).
    assert.deepEqual(all['sprig-catalog'], ['/models.json']);
    assert.equal(await swVersion(page), build.version);

    const first = env.server.requests.length;
    const statuses = await page.evaluate(async (demo) => {
      const get = async (url, init) => (await fetch(url, init)).status;
      return {
        shell: await get('/index.html'),
        range: await get('/index.html', { headers: { range: 'bytes=0-9' } }),
        head: await get('/index.html', { method: 'HEAD' }),
        model: await get(demo),
        unknown: await get('/nope.txt'),
      };
    }, DEMO);
    assert.deepEqual(statuses, { shell: 200, range: 206, head: 200, model: 200, unknown: 404 });
    const reached = env.server.requests.slice(first).map((r) => `${r.method} ${r.path}${r.range ? ' ' + r.range : ''}`);
    assert.deepEqual(reached, ['GET /index.html bytes=0-9', 'HEAD /index.html', `GET ${DEMO}`, 'GET /nope.txt']);
    // Model files never land in the service worker's cache (the model store owns them).
    const after = await caches(page);
    assert.ok(!Object.values(after).flat().some((p) => p.startsWith('/models/')), JSON.stringify(after));
  } finally {
    await context.close();
  }
});

test('a new build is offered with a prompt on the next visit, never taken mid-reply, and taken when asked', async () => {
  // A served copy of dist/ (the models linked, not copied) that the test can redeploy.
  const root = await mkdtemp(join(tmpdir(), 'sprig-pwa-'));
  await cp(DIST, root, { recursive: true, filter: (src) => src !== join(DIST, 'models') });
  await symlink(join(DIST, 'models'), join(root, 'models'));
  const server = await startServer({ root });
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(server.url + '/');
    await controlled(page);
    await page.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
    const old = { build: await swBuild(root), worker: await workerMeta(page) };
    assert.equal(await page.getByTestId('update-prompt').count(), 0, 'no prompt on a first visit');

    // Deploy a new build: what Trunk writes (index.html changed, the worker
    // rebuilt with other bytes, under Trunk's fixed names), then the hook.
    for (const n of await readdir(root)) if (WORKER_FILE.test(n)) await rm(join(root, n));
    const hash = WORKER_FILE.exec(old.worker.slice(2))[1];
    await writeFile(join(root, 'sprig-worker.js'), (await readFile(join(DIST, `sprig-worker-${hash}.js`), 'utf8')) + '\n// build 2\n');
    await cp(join(DIST, `sprig-worker-${hash}_bg.wasm`), join(root, 'sprig-worker_bg.wasm'));
    await writeFile(join(root, 'sprig-worker_loader.js'), (await readFile(join(DIST, `sprig-worker-${hash}_loader.js`), 'utf8')).replaceAll(`sprig-worker-${hash}`, 'sprig-worker'));
    const html = await readFile(join(root, 'index.html'), 'utf8');
    await writeFile(
      join(root, 'index.html'),
      html.replace(/(<meta name="sprig-worker" content=")[^"]*/, '$1./sprig-worker_loader.js').replace('<title>', '<meta name="sprig-test-build" content="2" />\n    <title>'),
    );
    await promisify(execFile)('node', [join(REPO, 'scripts/pwa-build')], {
      env: { ...process.env, TRUNK_STAGING_DIR: root, TRUNK_SOURCE_DIR: REPO },
    });
    const fresh = { build: await swBuild(root), worker: `./${(await readdir(root)).find((n) => WORKER_FILE.test(n) && n.endsWith('_loader.js'))}` };
    assert.notEqual(fresh.build.version, old.build.version);
    assert.notEqual(fresh.worker, old.worker, 'another worker build, another worker name');
    assert.match(fresh.worker, /^\.\/sprig-worker-[0-9a-f]{16}_loader\.js$/);

    // The next visit still runs the version it has (old page, old worker, from
    // the cache: the server no longer has those files) and offers the new one.
    await page.reload();
    await page.getByTestId('update-prompt').waitFor({ timeout: 60_000 });
    assert.match(await page.getByTestId('update-prompt').textContent(), /new version of Sprig is ready/);
    assert.equal(await workerMeta(page), old.worker);
    await page.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
    assert.equal(await swVersion(page), old.build.version);

    // Mid-reply, the prompt waits: its button is disabled and nothing reloads.
    await page.evaluate(() => { window.__sameDocument = true; });
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    await setSettings(page, { temperature: 0, 'max-tokens': 400, 'repeat-penalty': 1 });
    await send(page, 'Write a long story about a dragon.');
    await page.getByTestId('update-wait').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('update-reload').isDisabled(), true);
    await page.getByTestId('update-reload').click({ force: true }); // a click on the disabled button does nothing
    await page.waitForTimeout(1000);
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload mid-reply');
    await page.getByTestId('stop').click();
    await page.getByTestId('reply-stats').first().waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('update-reload').isDisabled(), false);
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'still no reload');

    // Asked, it reloads into the new version: new page, new worker, only the new cache.
    await Promise.all([page.waitForEvent('load', { timeout: 60_000 }), page.getByTestId('update-reload').click()]);
    await controlled(page);
    assert.equal(await page.evaluate(() => window.__sameDocument), undefined, 'a new document');
    assert.equal(await page.evaluate(() => document.querySelector('meta[name="sprig-test-build"]')?.content), '2');
    assert.equal(await workerMeta(page), fresh.worker);
    await page.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
    assert.equal(await swVersion(page), fresh.build.version);
    // The old version's shell is gone; the catalog's cache, which versions share, stays.
    assert.deepEqual(Object.keys(await caches(page)).sort(), ['sprig-catalog', `sprig-shell-${fresh.build.version}`], 'the old version cleaned up');
    assert.equal(await page.getByTestId('update-prompt').count(), 0);
    // The conversation is still there.
    await page.getByTestId('message-user').first().waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await server.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('the manifest, icons and service worker make the app installable', async () => {
  const page = await env.browser.newPage();
  try {
    await page.goto(env.server.url + '/');
    await controlled(page);
    const info = await page.evaluate(async () => {
      const link = document.querySelector('link[rel="manifest"]');
      const response = await fetch(link.href);
      const registration = await navigator.serviceWorker.getRegistration();
      return {
        href: link.href,
        type: response.headers.get('content-type'),
        manifest: await response.json(),
        scope: registration.scope,
        script: registration.active.scriptURL,
        theme: document.querySelector('meta[name="theme-color"]')?.content,
        apple: document.querySelector('link[rel="apple-touch-icon"]')?.href,
      };
    });
    const root = env.server.url + '/';
    assert.equal(info.href, root + 'manifest.webmanifest');
    assert.match(info.type, /^application\/manifest\+json/);
    const m = info.manifest;
    assert.equal(m.short_name, 'Sprig');
    assert.match(m.name, /^Sprig/);
    assert.equal(m.display, 'standalone');
    assert.equal(new URL(m.start_url, info.href).href, root);
    assert.equal(new URL(m.scope, info.href).href, root);
    assert.match(m.theme_color, /^#[0-9a-f]{6}$/i);
    assert.match(m.background_color, /^#[0-9a-f]{6}$/i);
    assert.equal(info.theme, m.theme_color);
    assert.equal(info.scope, root, 'the service worker covers the whole app');
    assert.equal(info.script, root + 'sw.js');

    // Icons: the sizes browsers ask for, real PNGs of those sizes.
    const icon = async (href) => {
      const r = await page.request.get(href);
      assert.equal(r.status(), 200, href);
      return pngSize(await r.body());
    };
    for (const [size, purpose] of [[192, 'any'], [512, 'any'], [512, 'maskable']]) {
      const entry = m.icons.find((i) => i.sizes === `${size}x${size}` && i.type === 'image/png' && (i.purpose ?? 'any').split(' ').includes(purpose));
      assert.ok(entry, `a ${size} ${purpose} PNG icon: ${JSON.stringify(m.icons)}`);
      assert.deepEqual(await icon(new URL(entry.src, info.href).href), { width: size, height: size }, entry.src);
    }
    assert.deepEqual(await icon(info.apple), { width: 180, height: 180 });

    // What Chromium itself says (from a non-incognito profile: in one, it never offers installing).
    const cdp = await page.context().newCDPSession(page);
    const parsed = await cdp.send('Page.getAppManifest');
    assert.equal(parsed.url, info.href);
    assert.deepEqual(parsed.errors, []);
  } finally {
    await page.close();
  }
  const profile = await mkdtemp(join(tmpdir(), 'sprig-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(env.server.url + '/');
    await controlled(page);
    const cdp = await context.newCDPSession(page);
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installabilityErrors, []);
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
});

test('a page that names files of another build is never installed as the offline shell', async () => {
  // A copy of dist/ whose index.html names a worker loader this build's
  // service worker does not precache (a page of another deployment, or a
  // tampered one): the shell must not install.
  const root = await mkdtemp(join(tmpdir(), 'sprig-pwa-foreign-'));
  await cp(DIST, root, { recursive: true, filter: (src) => src !== join(DIST, 'models') });
  const html = await readFile(join(root, 'index.html'), 'utf8');
  await writeFile(join(root, 'index.html'), html.replace(/content="\.\/sprig-worker-[0-9a-f]{16}_loader\.js"/, 'content="./sprig-worker-0000000000000000_loader.js"'));
  const server = await startServer({ root });
  const context = await env.browser.newContext();
  try {
    /** Registers sw.js in `page` and waits for the new worker's install to end: its state. */
    const install = (page) => page.evaluate(async () => {
      const reg = await navigator.serviceWorker.register('./sw.js');
      const worker = reg.installing ?? reg.waiting ?? reg.active;
      if (worker.state !== 'installing') return worker.state;
      await new Promise((ok) => worker.addEventListener('statechange', () => { if (worker.state !== 'installing') ok(); }));
      return worker.state;
    });
    const page = await context.newPage();
    await page.goto(server.url + '/');
    assert.equal(await install(page), 'redundant', 'the install failed');
    assert.deepEqual(Object.keys(await caches(page)).filter((k) => k.startsWith('sprig-shell-')), []);
    // The unchanged dist/ installs: the check passes on a real page.
    const good = await context.newPage();
    await good.goto(env.server.url + '/');
    assert.notEqual(await install(good), 'redundant');
  } finally {
    await context.close();
    await server.close();
    await rm(root, { recursive: true, force: true });
  }
});
