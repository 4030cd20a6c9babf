// Hostile input, end to end in headless Chromium: a manifest that claims an
// absurd size, a store entry such a manifest once left behind, chat text that
// would make the page fetch from elsewhere, and a site framing the app. Each
// ends with the same page working normally (the demo model chats).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../server.mjs';
import { collectErrors, useDistAndBrowser } from './browser.mjs';
import { LOAD_TIMEOUT, openModels, send, setSettings, startDemo, waitReady, waitReply } from './app.mjs';

const HUGE = 2 ** 53;
const ZEROS = '0'.repeat(64);
const env = await useDistAndBrowser();

/** A second origin serving `files` (name → text) with CORS, for the test's duration. */
async function otherOrigin(files) {
  const root = await mkdtemp(join(tmpdir(), 'sprig-hostile-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(root, name), text);
  const server = await startServer({ root, cors: true });
  server.root = root;
  return { server, close: async () => { await server.close(); await rm(root, { recursive: true, force: true }); } };
}

/** Loads the demo model (the picker's default), greedy, replies of at most `maxTokens`. */
async function loadDemo(page, maxTokens) {
  await startDemo(page);
  await waitReady(page);
  await setSettings(page, { temperature: 0, 'max-tokens': maxTokens });
}

/** Loads the demo model and returns its greedy 8-token reply. */
async function demoChats(page) {
  await loadDemo(page, 8);
  await page.getByTestId('new-chat').click();
  await send(page, 'What is the capital of France?');
  await waitReply(page);
  const reply = await page.locator('[data-testid="message-assistant"] .md').first().textContent();
  assert.ok(reply.trim().length > 0, 'the demo model answered');
  return reply;
}

test('a manifest whose shard claims 2^53 bytes is refused, naming the field; nothing is stored and the demo then chats', async () => {
  const manifest = { name: 'huge', format: 'gguf', total_size: HUGE, shards: [{ url: 'x.gguf', size: HUGE, sha256: ZEROS }] };
  const origin = await otherOrigin({ 'manifest.json': JSON.stringify(manifest) });
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(env.server.url + '/');
    await page.getByTestId('model-select').selectOption('custom');
    await page.getByTestId('model-url').fill(`${origin.server.url}/manifest.json`);
    await page.getByTestId('model-load').click();
    const failed = page.getByTestId('model-failed');
    await failed.waitFor({ timeout: 60_000 });
    assert.match(await failed.textContent(), /total_size is 9007199254740992 bytes/);
    // Nothing was recorded: the store lists no entry for it, after a reload too.
    await page.reload();
    await openModels(page);
    await page.getByTestId('storage-usage').waitFor();
    assert.equal(await page.locator('[data-testid="stored-model"][data-state="damaged"]').count(), 0);
    assert.equal(await page.locator(`[data-testid="stored-model"][data-url="${origin.server.url}/manifest.json"]`).count(), 0);
    await demoChats(page);
    assert.deepEqual(errors.filter((e) => /panicked|unreachable|RuntimeError/.test(e)), []);
  } finally {
    await context.close();
    await origin.close();
  }
});

test('a store entry that claims 2^53 bytes (left by an older version) is listed as damaged with Delete; after deleting it the demo chats', async () => {
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(env.server.url + '/');
    // What Sprig before this check saved for the manifest above.
    await page.evaluate(async ({ huge, zeros }) => {
      const root = await navigator.storage.getDirectory();
      const models = await root.getDirectoryHandle('sprig-models', { create: true });
      const dir = await models.getDirectoryHandle('bricked', { create: true });
      const file = await dir.getFileHandle('meta.json', { create: true });
      const w = await file.createWritable();
      await w.write(JSON.stringify({
        name: 'huge', source: { type: 'manifest', url: 'http://127.0.0.1:9/manifest.json' },
        total_size: huge, shards: [{ key: zeros, size: huge, sha256: zeros }], etag: null, manifest: null,
      }));
      await w.close();
    }, { huge: HUGE, zeros: ZEROS });
    // Every start lists the store: the page must come up with the list.
    await page.reload();
    await openModels(page);
    const row = page.locator('[data-testid="stored-model"][data-state="damaged"]');
    await row.waitFor({ timeout: 30_000 });
    assert.match(await row.getByTestId('model-state').textContent(), /Damaged: .*shard 1 a size of 9007199254740992 bytes.*Delete it/);
    assert.equal(await row.getByTestId('models-load').count(), 0, 'a damaged entry cannot be loaded');
    await row.getByTestId('model-delete').click();
    await row.waitFor({ state: 'detached', timeout: 30_000 });
    const left = await page.evaluate(async () => {
      const models = await (await navigator.storage.getDirectory()).getDirectoryHandle('sprig-models');
      const names = [];
      for await (const name of models.keys()) names.push(name);
      return names;
    });
    assert.ok(!left.includes('bricked'), `the entry's folder is gone: ${left}`);
    await demoChats(page);
    assert.deepEqual(errors.filter((e) => /panicked|unreachable|RuntimeError/.test(e)), []);
  } finally {
    await context.close();
  }
});

test('a reply cannot make the page fetch from elsewhere: an image becomes a link, nothing is requested', async () => {
  const origin = await otherOrigin({ 'pixel.png': 'not really a png' });
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    const requested = [];
    page.on('request', (r) => { if (r.url().startsWith(origin.server.url)) requested.push(r.url()); });
    await page.goto(env.server.url + '/');
    await page.getByTestId('new-chat').click();
    await page.getByTestId('composer').waitFor();
    // A reply as a model could write it, saved as the app saves conversations.
    const img = `${origin.server.url}/pixel.png?q=the-chat`;
    const reply = `look ![the chat](${img}) <img src="${img}"> <video src="${img}"></video> [widget](/?embed=1&model=x)`;
    await page.evaluate(async (content) => {
      const db = await new Promise((resolve, reject) => {
        const r = indexedDB.open('sprig', 1);
        r.onupgradeneeded = () => r.result.createObjectStore('conversations');
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
      const c = { id: 'c-hostile', title: 'Hostile reply', updated: Date.now() + 60_000,
        entries: [{ role: 'user', content: 'hi' }, { role: 'assistant', content }] };
      await new Promise((resolve, reject) => {
        const tx = db.transaction('conversations', 'readwrite');
        tx.objectStore('conversations').put(JSON.stringify(c), c.id);
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
      db.close();
    }, reply);
    await page.reload();
    await page.getByTestId('history-item').filter({ hasText: 'Hostile reply' }).locator('button.title').click();
    const message = page.locator('[data-testid="message-assistant"] .md').first();
    await message.waitFor();
    assert.equal(await message.locator('img, video').count(), 0, 'no image or video element');
    assert.equal(await message.locator(`a[href="${img}"]`).textContent(), 'the chat');
    assert.equal(await message.locator('a[href*="embed"]').count(), 0, 'no link to the widget view');
    await page.waitForTimeout(500);
    assert.deepEqual(requested, []);
    assert.deepEqual(origin.server.requests.map((r) => r.path), []);
  } finally {
    await context.close();
    await origin.close();
  }
});

test('another site cannot frame the full app; the widget view may be framed', async () => {
  const host = `<!doctype html><iframe id="app" src="${env.server.url}/"></iframe>` +
    `<iframe id="widget" src="${env.server.url}/?embed=1&title=Framed"></iframe>`;
  const origin = await otherOrigin({ 'host.html': host });
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${origin.server.url}/host.html`);
    await page.frameLocator('#widget').getByTestId('embed').waitFor({ timeout: 30_000 });
    await page.waitForTimeout(1000);
    assert.equal(await page.frameLocator('#app').getByTestId('new-chat').count(), 0, 'the full app did not start framed');
    // Served without the frame-ancestors header (a host that does not send
    // it), the app itself refuses to run framed.
    const strip = await context.newPage();
    await strip.route(`${env.server.url}/`, async (route) => {
      const response = await route.fetch();
      const headers = { ...response.headers() };
      delete headers['content-security-policy'];
      await route.fulfill({ response, headers });
    });
    await strip.goto(`${origin.server.url}/host.html`);
    await strip.frameLocator('#app').getByTestId('framed').waitFor({ timeout: 30_000 });
    assert.equal(await strip.frameLocator('#app').getByTestId('new-chat').count(), 0);
  } finally {
    await context.close();
    await origin.close();
  }
});

test('a reload mid-reply keeps the message and the reply so far', async () => {
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(env.server.url + '/');
    await loadDemo(page, 400);
    await page.getByTestId('new-chat').click();
    const question = 'Write a long story about a lighthouse keeper and the sea.';
    await page.getByTestId('composer').fill(question);
    await page.getByTestId('composer').press('Enter');
    // Streaming for more than a save interval (1 s), then the tab goes away.
    await page.locator('[data-live-tokens]').first().waitFor();
    await page.waitForFunction(() => Number(document.querySelector('[data-live-tokens]')?.getAttribute('data-live-tokens') ?? 0) >= 10);
    await page.waitForTimeout(1500);
    assert.equal(await page.getByTestId('reply-stats').count(), 0, 'the reply was still streaming');
    await page.reload();
    await page.getByTestId('history-item').filter({ hasText: 'Write a long story' }).first().locator('button.title').click();
    assert.equal(await page.getByTestId('message-user').first().textContent(), question);
    const partial = await page.locator('[data-testid="message-assistant"] .md').first().textContent();
    assert.ok(partial.trim().split(/\s+/).length >= 5, `the reply so far was kept: ${JSON.stringify(partial)}`);
  } finally {
    await context.close();
  }
});

test('the widget view opened as a top-level page (a link) downloads nothing before a click', async () => {
  const manifest = '/models/SmolLM2-135M-Instruct.Q4_1.manifest.json';
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    const first = env.server.requests.length;
    await page.goto(`${env.server.url}/?embed=1&model=${encodeURIComponent(env.server.url + manifest)}`);
    await page.getByTestId('model-consent').waitFor({ timeout: 30_000 });
    assert.match(await page.getByTestId('model-consent').textContent(), /SmolLM2-135M-Instruct\.Q4_1\.manifest\.json/);
    await page.waitForTimeout(1500);
    const modelRequests = () => env.server.requests.slice(first).filter((r) => r.path.startsWith('/models/'));
    assert.deepEqual(modelRequests().map((r) => r.path), [], 'nothing fetched before the click');
    await page.getByTestId('model-consent-load').click();
    await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    assert.ok(modelRequests().length > 0);
  } finally {
    await context.close();
  }
});

test('a plain GGUF URL replaced on the server mid-download starts over with the new version; replaced again then, it is refused, not stored as a mix; loading again gets the new file', async () => {
  const origin = await otherOrigin({});
  const file = join(origin.server.root ?? '', 'model.gguf');
  const context = await env.browser.newContext();
  try {
    await copyFile(fileURLToPath(new URL('../../models/SmolLM2-135M-Instruct.Q4_1.gguf', import.meta.url)), file);
    origin.server.setFaults({ delayMs: 20 });
    const page = await context.newPage();
    await page.goto(env.server.url + '/');
    await page.getByTestId('model-select').selectOption('custom');
    await page.getByTestId('model-url').fill(`${origin.server.url}/model.gguf`);
    await page.getByTestId('model-load').click();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="model-progress"]')?.getAttribute('aria-valuenow') ?? 0) >= 10, null, { timeout: 60_000 });
    /** A new version: same bytes, new modification time, so a new ETag. */
    const replace = async (minutes) => {
      const later = new Date(Date.now() + minutes * 60_000);
      await utimes(file, later, later);
    };
    const first = origin.server.requests.length;
    await replace(1);
    // The worker starts over: a new four-byte probe, answered with the new ETag…
    const probed = () => origin.server.requests.slice(first).some((r) => r.range === 'bytes=0-3' && r.status === 206);
    for (let i = 0; i < 300 && !probed(); i++) await page.waitForTimeout(100);
    assert.ok(probed(), 'the download started over');
    // …and when the file changes again during that download, it gives up.
    await replace(2);
    const failed = page.getByTestId('model-failed');
    await failed.waitFor({ timeout: 60_000 });
    assert.match(await failed.textContent(), /changed on the server during the download/);
    origin.server.clearFaults();
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
  } finally {
    await context.close();
    await origin.close();
  }
});

test('two tabs changing one conversation never overwrite each other: the later one becomes a new conversation', async () => {
  const context = await env.browser.newContext();
  try {
    /** A tab with the demo loaded, greedy 6-token replies. */
    const tab = async () => {
      const page = await context.newPage();
      await page.goto(env.server.url + '/');
      await loadDemo(page, 6);
      return page;
    };
    const say = async (page, text) => {
      const before = await page.getByTestId('reply-stats').count();
      await page.getByTestId('composer').fill(text);
      await page.getByTestId('composer').press('Enter');
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="reply-stats"]').length > n, before, { timeout: 120_000 });
      await page.waitForTimeout(300); // the save after the reply
    };
    const a = await tab();
    await a.getByTestId('new-chat').click();
    await say(a, 'Shared question about the sea');
    const b = await tab();
    await b.getByTestId('history-item').filter({ hasText: 'Shared question about the sea' }).first().locator('button.title').click();
    await b.getByTestId('message-user').filter({ hasText: 'Shared question about the sea' }).waitFor();
    await say(a, 'Second question from tab A');
    await say(b, 'Second question from tab B');
    await b.getByTestId('notice').filter({ hasText: 'changed in another tab' }).waitFor({ timeout: 10_000 });
    // A fresh tab sees both versions, each whole.
    const c = await context.newPage();
    await c.goto(env.server.url + '/');
    const items = c.getByTestId('history-item').filter({ hasText: 'Shared question about the sea' });
    await items.first().waitFor();
    assert.equal(await items.count(), 2, 'the original and the fork');
    /** Opens `item` and waits until its user messages are `want`, in order. */
    const shows = async (item, want) => {
      await item.locator('button.title').click();
      await c.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('[data-testid="message-user"]')].map((e) => e.textContent)) === JSON.stringify(w), want, { timeout: 10_000 });
    };
    await shows(items.filter({ hasNotText: '(this tab)' }).first(), ['Shared question about the sea', 'Second question from tab A']);
    await shows(items.filter({ hasText: '(this tab)' }).first(), ['Shared question about the sea', 'Second question from tab B']);
  } finally {
    await context.close();
  }
});
