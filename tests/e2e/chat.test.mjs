// The chat, end to end: the built dist/ served over HTTP, Debian Chromium
// driven by Playwright, the real demo model loaded by the worker.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectErrors, useDistAndBrowser } from './browser.mjs';
import { LOAD_TIMEOUT, send, setSettings, startDemo, waitReady, waitReply } from './app.mjs';

const env = await useDistAndBrowser();

/** A fresh page (own storage) with the demo model loaded. */
async function loadedPage({ settings, query = '' } = {}) {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(env.server.url + '/' + query);
  await startDemo(page);
  await page.getByTestId('model-progress').waitFor({ timeout: 30_000 });
  await waitReady(page);
  if (settings) await setSettings(page, settings);
  return { context, page, errors };
}

/** Waits until the app's IndexedDB store holds `n` conversations. */
async function waitStored(page, n) {
  await page.waitForFunction(async (n) => {
    const db = await new Promise((ok, no) => { const r = indexedDB.open('sprig', 1); r.onsuccess = () => ok(r.result); r.onerror = no; });
    const count = await new Promise((ok) => { const r = db.transaction('conversations').objectStore('conversations').count(); r.onsuccess = () => ok(r.result); });
    db.close();
    return count === n;
  }, n, { timeout: 10_000 });
}


test('load shows progress, a reply streams token by token, stats appear', async () => {
  const { context, page, errors } = await loadedPage({ settings: { temperature: 0, 'max-tokens': 24 } });
  assert.match(await page.getByTestId('model-ready').textContent(), /llama · Q4_1/);
  // Record the assistant bubble's text on every DOM change while it streams.
  await page.evaluate(() => {
    window.__seen = [];
    new MutationObserver(() => {
      const b = document.querySelector('[data-testid="message-assistant"] .md');
      if (b) window.__seen.push(b.textContent);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await send(page, 'What is the capital of France?');
  await page.getByTestId('message-user').first().waitFor();
  const stats = await waitReply(page, 1);
  assert.match(stats, /tokens · [\d.]+ tok\/s/);
  const seen = await page.evaluate(() => [...new Set(window.__seen.filter(Boolean))]);
  assert.ok(seen.length >= 3, `the reply grew over several updates: ${JSON.stringify(seen)}`);
  const final = await page.locator('[data-testid="message-assistant"] .md').first().textContent();
  const grew = seen.filter((t) => t.length < final.length && final.startsWith(t.trimEnd()));
  assert.ok(grew.length >= 2, `earlier states are prefixes of the final reply: ${JSON.stringify({ seen, final })}`);
  assert.ok((await page.getByTestId('message-assistant').first().textContent()).length > 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the forced simd128 fallback (?kernels=simd128) chats, with the same greedy reply as relaxed SIMD', async () => {
  const replies = {};
  for (const [query, kernels] of [['', 'wasm relaxed SIMD'], ['?kernels=simd128', 'wasm SIMD']]) {
    const { context, page, errors } = await loadedPage({ query, settings: { temperature: 0, 'max-tokens': 24 } });
    // The ready line says which build runs the model.
    assert.equal(await page.getByTestId('model-kernels').textContent(), kernels);
    assert.match(await page.getByTestId('model-ready').textContent(), new RegExp(`${kernels} kernels`));
    await send(page, 'What is the capital of France?');
    await waitReply(page, 1);
    replies[kernels] = await page.locator('[data-testid="message-assistant"] .md').first().textContent();
    assert.deepEqual(errors, []);
    await context.close();
  }
  assert.ok(replies['wasm SIMD'].length > 0);
  // Both builds compute the same bits, so the same greedy tokens.
  assert.equal(replies['wasm SIMD'], replies['wasm relaxed SIMD']);
});

test('Stop ends the reply within a token; a second turn prefills only the new tokens', async () => {
  const { context, page } = await loadedPage({ settings: { temperature: 0, 'max-tokens': 400, 'repeat-penalty': 1 } });
  await send(page, 'Write a long story about a dragon.');
  const bubble = page.getByTestId('message-assistant').first();
  await page.waitForFunction(() => (document.querySelector('[data-testid="message-assistant"] .md')?.textContent ?? '').length > 20, null, { timeout: 60_000 });
  // Click Stop and read how many tokens had arrived, in one step in the page.
  const atStop = await page.evaluate(() => {
    document.querySelector('[data-testid="stop"]').click();
    return Number(document.querySelector('[data-testid="message-assistant"]').dataset.liveTokens);
  });
  const stats = await waitReply(page, 1);
  assert.match(stats, /stopped/);
  const generated = Number(/^(\d+) tokens/.exec(stats)[1]);
  // At most the token being computed and one already posted arrive after Stop.
  assert.ok(atStop > 0 && generated <= atStop + 2, `stopped within a token: ${atStop} at Stop, ${stats}`);
  // The text shown stays as it was once stopped.
  const stopped = await bubble.textContent();
  await page.waitForTimeout(500);
  assert.equal(await bubble.textContent(), stopped);

  await send(page, 'Shorter, please.');
  const second = await waitReply(page, 2);
  const m = /prompt (\d+) tokens \((\d+) new/.exec(second);
  assert.ok(m, second);
  const [prompt, fresh] = [Number(m[1]), Number(m[2])];
  assert.ok(fresh < prompt / 2, `only the new turn is prefilled: ${second}`);
  assert.ok(fresh >= 5, `the new user message itself runs: ${second}`);
  await context.close();
});

test('the conversation survives a reload and can be deleted', async () => {
  const { context, page } = await loadedPage({ settings: { temperature: 0, 'max-tokens': 8 } });
  await send(page, 'Remember me: pineapple.');
  await waitReply(page, 1);
  await waitStored(page, 1); // the save is asynchronous
  await page.reload();
  await page.getByTestId('message-user').first().waitFor();
  assert.match(await page.getByTestId('message-user').first().textContent(), /pineapple/);
  assert.equal(await page.getByTestId('history-item').count(), 1);
  await page.getByTestId('new-chat').click();
  assert.equal(await page.getByTestId('message-user').count(), 0);
  await page.getByTestId('history-item').first().locator('button.title').click();
  await page.getByTestId('message-user').first().waitFor();
  await page.getByTestId('history-delete').first().click();
  assert.equal(await page.getByTestId('history-item').count(), 0);
  await waitStored(page, 0); // so is the delete; then a reload finds nothing
  await page.reload();
  await page.waitForTimeout(500);
  assert.equal(await page.getByTestId('message-user').count(), 0);
  await context.close();
});

test('a model URL that 404s or serves garbage gives a clear error and the app stays usable', async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(env.server.url + '/');
  await page.getByTestId('model-select').selectOption('custom');
  await page.getByTestId('model-url').fill(env.server.url + '/models/nope.gguf');
  await page.getByTestId('model-load').click();
  await page.getByTestId('error').waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId('error').textContent(), /HTTP 404/);
  await page.getByTestId('model-url').fill(env.server.url + '/index.html');
  await page.getByTestId('model-load').click();
  await page.getByTestId('model-failed').waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId('error').textContent(), /GGUF/);
  // Still usable: the demo model loads after the failures.
  await page.getByTestId('model-select').selectOption('demo');
  await page.getByTestId('model-load').click();
  await page.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
  await context.close();
});

test('HTML and scripts in a reply render inert', async () => {
  const { context, page, errors } = await loadedPage({ settings: { temperature: 0, 'max-tokens': 4 } });
  await page.addInitScript(() => { window.__pwned = 0; });
  // The model's reply is Markdown; seed the conversation with a reply holding
  // markup, the way a model could write it, then render it through the app.
  await send(page, 'Hi');
  await waitReply(page, 1);
  await waitStored(page, 1);
  const evil = 'Look: <script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> [x](javascript:window.__pwned=3)';
  await page.evaluate(async (evil) => {
    // Through the same IndexedDB record the app saves, then reload to render it.
    const db = await new Promise((ok, no) => { const r = indexedDB.open('sprig', 1); r.onsuccess = () => ok(r.result); r.onerror = no; });
    const all = await new Promise((ok) => { const r = db.transaction('conversations').objectStore('conversations').getAll(); r.onsuccess = () => ok(r.result); });
    const c = JSON.parse(all[0]);
    c.entries[1].content = evil;
    await new Promise((ok) => { const t = db.transaction('conversations', 'readwrite'); t.objectStore('conversations').put(JSON.stringify(c), c.id); t.oncomplete = ok; });
  }, evil);
  await page.reload();
  await page.getByTestId('message-assistant').first().waitFor();
  await page.waitForTimeout(500);
  const message = page.getByTestId('message-assistant').first();
  // The markup is shown as text; no element of it exists, and the link to javascript: keeps only its text.
  assert.equal(await message.locator('script, img, [onerror], a[href^="javascript" i]').count(), 0);
  assert.match(await message.textContent(), /Look: <script>window.__pwned=1<\/script> <img src=x onerror="window.__pwned=2"> x/);
  assert.equal(await page.evaluate(() => window.__pwned), 0);
  await context.close();
  assert.deepEqual(errors, []);
});

test('a shard whose SHA-256 does not match its manifest is refused', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { startServer } = await import('../server.mjs');
  const dir = await mkdtemp(join(tmpdir(), 'sprig-manifest-'));
  const good = await (await fetch(env.server.url + '/models/SmolLM2-135M-Instruct.Q4_1.manifest.json')).json();
  const bad = structuredClone(good);
  bad.shards[0].url = env.server.url + '/models/' + good.shards[0].url; // absolute: the shard stays on the app's server
  bad.shards[0].sha256 = '0'.repeat(64);
  await writeFile(join(dir, 'bad.manifest.json'), JSON.stringify(bad));
  const other = await startServer({ root: dir, cors: true });
  const context = await env.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(env.server.url + '/');
    await page.getByTestId('model-select').selectOption('custom');
    await page.getByTestId('model-url').fill(other.url + '/bad.manifest.json');
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-failed').waitFor({ timeout: LOAD_TIMEOUT });
    const message = await page.getByTestId('error').textContent();
    assert.match(message, /failed verification/);
    assert.match(message, new RegExp(good.shards[0].sha256)); // the real hash, as computed in the worker
    assert.equal(await page.getByTestId('model-ready').count(), 0);
  } finally {
    await context.close();
    await other.close();
  }
});

test('a second visit loads the verified model from the model store, even offline', async () => {
  const context = await env.browser.newContext();
  try {
    const fetched = () => env.server.requests.filter((r) => r.path.startsWith('/models/')).length;
    const before = fetched();
    const first = await context.newPage();
    await first.goto(env.server.url + '/');
    await first.getByTestId('model-load').click();
    await first.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    assert.ok(fetched() > before, 'the first visit downloads the model');
    await first.close();

    const afterFirst = fetched();
    const second = await context.newPage();
    await second.goto(env.server.url + '/');
    // The app and its worker are up (the offline app shell is issue 7's); now the network goes.
    await second.getByTestId('worker-hello').waitFor({ timeout: 30_000 });
    await context.setOffline(true);
    await second.getByTestId('model-load').click();
    await second.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    assert.equal(fetched(), afterFirst, 'the second visit makes no request for the model');
    await second.getByTestId('composer').fill('Hi');
    await second.getByTestId('composer').press('Enter');
    await second.getByTestId('reply-stats').first().waitFor({ timeout: 120_000 });
  } finally {
    await context.setOffline(false);
    await context.close();
  }
});
