// The model catalog, models.json, end to end: the built dist/ served over
// HTTP, Debian Chromium driven by Playwright. The picker, the Models panel
// and the widget list what models.json says, read at run time: a copy of
// dist/ with another models.json (every other file linked, not copied) shows
// it with no rebuild. A missing or malformed catalog is said in the page and
// a custom URL still loads; a catalog without custom URLs hides them and the
// widget refuses a URL; the installed app keeps the catalog offline.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectErrors, useDistAndBrowser } from './browser.mjs';
import { LOAD_TIMEOUT, ask, openModels, setSettings, startDemo, startUrl, waitReady } from './app.mjs';
import { startServer } from '../server.mjs';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DIST = process.env.SPRIG_DIST ?? join(REPO, 'dist');
const MANIFEST = 'models/SmolLM2-135M-Instruct.Q4_1.manifest.json';
const GGUF = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const GGUF_SHA256 = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53';
const env = await useDistAndBrowser();

/** Served copies of dist/ made by the tests, removed at the end. */
const deployments = [];
after(async () => {
  for (const d of deployments) {
    await d.server.close();
    await rm(d.root, { recursive: true, force: true });
  }
});

/**
 * A deployment of this build with its own models.json (`catalog`: an object,
 * a string written as is, or null for none): dist/'s files linked into a
 * temporary folder, served on an origin of its own.
 */
async function deploy(catalog) {
  const root = await mkdtemp(join(tmpdir(), 'sprig-catalog-'));
  for (const name of await readdir(DIST)) {
    if (name !== 'models.json') await symlink(join(DIST, name), join(root, name));
  }
  const d = { root, server: await startServer({ root }) };
  deployments.push(d);
  await writeCatalog(d, catalog);
  return d;
}

/** Replaces (or, with null, removes) a deployment's models.json. */
async function writeCatalog(d, catalog) {
  const path = join(d.root, 'models.json');
  if (catalog === null) await rm(path, { force: true });
  else await writeFile(path, typeof catalog === 'string' ? catalog : JSON.stringify(catalog, null, 2));
}

/** A catalog entry for the demo model's manifest. */
const demoEntry = (fields = {}) => ({
  id: 'demo',
  label: 'SmolLM2 135M Instruct · Q4_1 (demo)',
  url: MANIFEST,
  size: 98362432,
  sha256: null,
  license: 'Apache-2.0',
  ...fields,
});

/** The picker's options: [value, text]. */
const options = (page) =>
  page.getByTestId('model-select').evaluate((s) => [...s.options].filter((o) => !o.disabled).map((o) => [o.value, o.textContent]));

/** A fresh context and page at `url`, once the picker has read the catalog. */
async function open(url) {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(url);
  await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid="model-select"]');
    return (s && !s.disabled) || document.querySelector('[data-testid="catalog-error"]');
  });
  return { context, page, errors };
}

/** The value a Settings field shows. */
const field = (page, id) => page.getByTestId(id).inputValue();

test('the picker lists the models of dist/models.json, and chats with the demo through it', async () => {
  const catalog = JSON.parse(await readFile(join(DIST, 'models.json'), 'utf8'));
  assert.deepEqual(catalog.models.map((m) => m.id), ['demo'], 'this repository serves the demo model only');
  const { context, page, errors } = await open(env.server.url + '/');
  try {
    const listed = await options(page);
    assert.deepEqual(listed.map(([value]) => value), ['demo', 'custom']);
    assert.match(listed[0][1], /^SmolLM2 135M Instruct · Q4_1 \(demo\) — 93\.8 MiB$/);
    assert.match(await page.getByTestId('model-about').textContent(), /Licence: Apache-2\.0\./);
    assert.ok(env.server.requests.some((r) => r.path === '/models.json' && r.status === 200));
    await startDemo(page);
    await waitReady(page);
    await setSettings(page, { temperature: 0, 'max-tokens': 12 });
    assert.ok((await ask(page, 1, 'What is the capital of France?')).trim().length > 0);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a changed models.json shows in the picker and the Models panel without a rebuild, and its defaults start the settings', async () => {
  const d = await deploy({
    version: 1,
    allow_custom_urls: true,
    models: [
      demoEntry({ id: 'tiny', label: 'Tiny chat', description: 'Renamed by the deployer.', defaults: { temperature: 0, max_tokens: 7, context: 1024 } }),
      { id: 'one-file', label: 'The demo as one GGUF', url: GGUF, size: 98362432, sha256: GGUF_SHA256, license: 'Apache-2.0' },
    ],
  });
  const { context, page, errors } = await open(d.server.url + '/');
  try {
    assert.deepEqual((await options(page)).map(([value]) => value), ['tiny', 'one-file', 'custom']);
    assert.match(await page.getByTestId('model-about').textContent(), /Renamed by the deployer\. Licence: Apache-2\.0\./);
    await openModels(page);
    for (const path of [MANIFEST, GGUF]) {
      await page.locator(`[data-testid="stored-model"][data-url="${d.server.url}/${path}"]`).waitFor();
    }
    // The user's own max-tokens stays; the model's defaults start the rest.
    await setSettings(page, { 'max-tokens': 9 });
    assert.equal(await field(page, 'temperature'), '0.7');
    await page.getByTestId('model-select').selectOption('tiny');
    await page.getByTestId('model-load').click();
    await waitReady(page);
    assert.deepEqual([await field(page, 'temperature'), await field(page, 'max-tokens'), await field(page, 'context')], ['0', '9', '1024']);
    assert.match(await page.getByTestId('model-ready').textContent(), /1024 tokens of context/);
    assert.ok((await ask(page, 1, 'Hello')).trim().length > 0);

    // The deployer edits models.json again: the next visit lists the new one.
    await writeCatalog(d, { version: 1, allow_custom_urls: true, models: [demoEntry({ id: 'again', label: 'Edited again' })] });
    await page.reload();
    await page.getByTestId('model-select').locator('option[value="again"]').waitFor({ state: 'attached' });
    assert.deepEqual((await options(page)).map(([value, text]) => [value, text.split(' — ')[0]]), [['again', 'Edited again'], ['custom', 'Another model (GGUF or manifest URL)…']]);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a malformed or missing models.json is said in the page, and a custom URL still loads the demo', async () => {
  const bad = demoEntry({ id: 'Bad Id' });
  const d = await deploy({ version: 1, allow_custom_urls: false, models: [bad] });
  const { context, page } = await open(d.server.url + '/');
  try {
    const error = page.getByTestId('catalog-error');
    assert.match(await error.textContent(), /the model catalog is malformed: models\.json, model 1 \(`Bad Id`\): id: must be/);
    assert.deepEqual((await options(page)).map(([value]) => value), ['custom'], 'the custom URL is offered');
    await startUrl(page, `${d.server.url}/${MANIFEST}`);
    await waitReady(page);

    for (const [catalog, said] of [
      ['{"version": 1, "models": [', /not valid JSON/],
      [JSON.stringify({ version: 2, allow_custom_urls: true, models: [] }), /models\.json has version 2; this Sprig reads version 1/],
      [null, /could not be read: HTTP 404 at .*\/models\.json/],
    ]) {
      await writeCatalog(d, catalog);
      await page.reload();
      assert.match(await error.textContent(), said);
    }
    // Still missing: the custom URL loads the demo (from the store now).
    await startUrl(page, `${d.server.url}/${MANIFEST}`);
    await waitReady(page);
  } finally {
    await context.close();
  }
});

test('allow_custom_urls: false hides custom URLs; the widget loads a catalog id and refuses a URL', async () => {
  const d = await deploy({ version: 1, allow_custom_urls: false, models: [demoEntry({ defaults: { temperature: 0, max_tokens: 8 } })] });
  const { context, page, errors } = await open(d.server.url + '/');
  try {
    assert.deepEqual((await options(page)).map(([value]) => value), ['demo'], 'no custom URL to choose');
    assert.equal(await page.getByTestId('model-url').count(), 0);

    // The widget opened by a link: a URL is refused before anything downloads.
    const modelUrl = `${d.server.url}/${MANIFEST}`;
    const seen = d.server.requests.length;
    await page.goto(`${d.server.url}/?embed=1&model=${encodeURIComponent(modelUrl)}`);
    assert.match(await page.getByTestId('model-failed').textContent(), /loads only the models of its catalog: data-model must be a catalog id/);
    assert.ok(!d.server.requests.slice(seen).some((r) => r.path.startsWith('/models/')), 'no model file was fetched');
    // An id the catalog does not list is refused too.
    await page.goto(`${d.server.url}/?embed=1&model=mistral`);
    assert.match(await page.getByTestId('model-failed').textContent(), /names `mistral`, which this Sprig's catalog does not list \(it lists: demo\)/);

    // By its id, the widget offers the catalog's model and chats with it.
    await page.goto(`${d.server.url}/?embed=1&model=demo`);
    assert.match(await page.getByTestId('model-consent').textContent(), new RegExp(modelUrl.replace(/[.?]/g, '\\$&')));
    await page.getByTestId('model-consent-load').click();
    await waitReady(page, LOAD_TIMEOUT);
    assert.ok((await ask(page, 1, 'Hello')).trim().length > 0);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

/**
 * Takes a deployment off the network for real (its server closed, and the
 * page's network emulated offline: the service worker's own fetches fail
 * too), runs `during`, then serves it again at the same address.
 */
async function offline(d, context, during) {
  const port = Number(new URL(d.server.url).port);
  await d.server.close();
  await context.setOffline(true);
  try {
    await during();
  } finally {
    await context.setOffline(false);
    d.server = await startServer({ root: d.root, port });
  }
}

test('the installed app keeps the catalog offline, and takes an edited one when back online', async () => {
  const d = await deploy({ version: 1, allow_custom_urls: true, models: [demoEntry({ label: 'First edition' })] });
  const { context, page } = await open(d.server.url + '/');
  const label = async () => (await options(page))[0][1].split(' — ')[0];
  const listed = async () => {
    await page.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
    await page.getByTestId('model-select').locator('option[value="demo"]').waitFor({ state: 'attached' });
    assert.equal(await page.getByTestId('catalog-error').count(), 0);
    return label();
  };
  try {
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    await offline(d, context, async () => {
      await page.reload();
      assert.equal(await listed(), 'First edition');
    });
    // Online again, the edited catalog is what the page reads (network
    // first), and it replaces the kept copy for the next offline start.
    await writeCatalog(d, { version: 1, allow_custom_urls: true, models: [demoEntry({ label: 'Second edition' })] });
    await page.reload();
    await page.waitForFunction(() => document.querySelector('[data-testid="model-select"] option')?.textContent.startsWith('Second edition'));
    await offline(d, context, async () => {
      await page.reload();
      assert.equal(await listed(), 'Second edition');
    });
    const kept = await page.evaluate(async () => (await (await caches.open('sprig-catalog')).keys()).map((r) => new URL(r.url).pathname));
    assert.deepEqual(kept, ['/models.json']);
  } finally {
    await context.close();
  }
});
