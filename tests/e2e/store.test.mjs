// The model store, end to end: the worker downloads the demo model (as three
// gguf-split shards behind a manifest, or as one GGUF file) from the real test
// server, which injects faults (cut connections, a corrupted byte, error
// statuses, no Range support, slow bodies); the model must always end up
// verified, stored in OPFS and answering exactly like a clean download.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { useDistAndBrowser } from './browser.mjs';
import { LOAD_TIMEOUT, cleanReply, freshPage as openApp, greedyAnswer as answer, openModels, startUrl, waitPercent, waitReady } from './app.mjs';

const SPLIT = '/models/split/SmolLM2-135M-Instruct.Q4_1.manifest.json';
const SINGLE = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const SIZE = 98_362_432;
const CHUNK = 4 << 20;
const env = await useDistAndBrowser();
/** A fresh browser context (own storage) and page on the app. */
const freshPage = () => openApp(env.browser, env.server.url);
/** The reply of a clean download: every faulty download must match it. */
const baseline = cleanReply(freshPage);

/** Starts loading the model at `path` (a manifest or a GGUF file on the test server). */
const startLoad = (page, path) => startUrl(page, env.server.url + path);
const ready = (page) => waitReady(page);

/**
 * The site's storage usage in bytes, as the browser estimates it, but for the
 * service worker's copy of the app shell (sw.js precaches it on every visit).
 */
const usage = (page) =>
  page.evaluate(async () => {
    const { usage, usageDetails: d = {} } = await navigator.storage.estimate();
    return usage - (d.caches ?? 0) - (d.serviceWorkerRegistrations ?? 0);
  });

/** The Models panel row of the model at `path`. */
function row(page, path) {
  return page.locator(`[data-testid="stored-model"][data-url="${env.server.url + path}"]`);
}

const modelBytes = (re = /^\/models\//) => env.server.bytesServed(re);
const modelRequests = (re = /^\/models\//) => env.server.requests.filter((r) => re.test(r.path));

test('connections cut at random offsets: the download resumes chunk by chunk and the model answers as usual', async () => {
  const seed = Number(process.env.SPRIG_TEST_SEED ?? Date.now() % 100_000);
  let x = seed;
  const rand = () => ((x = (x * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const cuts = [rand(), rand(), rand()].map((r) => Math.floor(1_000_000 + r * (SIZE - 2_000_000))).sort((a, b) => a - b);
  console.log(`# cut offsets ${cuts.join(', ')} (seed ${seed}; SPRIG_TEST_SEED=${seed} repeats them)`);
  const { context, page, errors } = await freshPage();
  const before = modelBytes();
  const first = env.server.requests.length;
  try {
    env.server.setFaults({ cutAfter: cuts });
    await startLoad(page, SPLIT);
    await ready(page);
  } finally {
    env.server.clearFaults();
  }
  const mine = env.server.requests.slice(first).filter((r) => /\.gguf$/.test(r.path));
  assert.equal(mine.filter((r) => r.cut).length, 3, 'every cut happened');
  assert.ok(mine.every((r) => r.range), 'every shard request is a Range request');
  // Resumed, not restarted: each cut costs at most the chunk it interrupted.
  const served = modelBytes() - before;
  assert.ok(served <= SIZE + 3 * CHUNK + 10_000, `served ${served} bytes for a ${SIZE}-byte model`);
  assert.equal(await answer(page), await baseline());
  assert.deepEqual(errors.filter((e) => !/Failed to load resource|ERR_/.test(e)), []);
  await context.close();
});

test('a reload mid-download keeps the stored chunks; loading again resumes from them', async () => {
  const { context, page } = await freshPage();
  try {
    env.server.setFaults({ delayMs: 15 });
    await startLoad(page, SPLIT);
    await waitPercent(page, 35);
    await page.reload();
  } finally {
    env.server.clearFaults();
  }
  await openModels(page);
  const r = row(page, SPLIT);
  await r.and(page.locator('[data-state="paused"]')).waitFor({ timeout: 10_000 });
  const stored = await r.textContent();
  const before = modelBytes();
  await r.getByTestId('models-load').click();
  await ready(page);
  const served = modelBytes() - before;
  assert.ok(served < SIZE * 0.7, `after the reload only the rest was fetched: ${served} bytes (${stored})`);
  assert.equal(await answer(page), await baseline());
  await context.close();
});

test('a corrupted shard is detected, fetched once more, and the model loads; corrupted twice it is refused', async () => {
  const shard2 = /00002-of-00003\.gguf$/;
  {
    const { context, page } = await freshPage();
    const before = modelBytes(shard2);
    try {
      env.server.setFaults({ corrupt: { path: shard2, offset: 12_345_678, times: 1 } });
      await startLoad(page, SPLIT);
      await ready(page);
    } finally {
      env.server.clearFaults();
    }
    const shardSize = 39_905_856;
    assert.ok(modelBytes(shard2) - before >= 2 * shardSize, 'the corrupted shard was downloaded twice');
    assert.equal(await answer(page), await baseline());
    await context.close();
  }
  {
    const { context, page } = await freshPage();
    try {
      env.server.setFaults({ corrupt: { path: shard2, offset: 12_345_678, times: Infinity } });
      await startLoad(page, SPLIT);
      await page.getByTestId('model-failed').waitFor({ timeout: LOAD_TIMEOUT });
    } finally {
      env.server.clearFaults();
    }
    assert.match(await page.getByTestId('error').textContent(), /shard 2 .*failed verification twice/);
    await openModels(page);
    assert.notEqual(await row(page, SPLIT).getAttribute('data-state'), 'ready', 'nothing unverified is marked complete');
    await context.close();
  }
});

test('server errors: 503s are retried with backoff, a 404 fails at once with a clear message', async () => {
  {
    const { context, page } = await freshPage();
    try {
      env.server.setFaults({ status: { code: 503, times: 3 } });
      await startLoad(page, SPLIT);
      await ready(page);
    } finally {
      env.server.clearFaults();
    }
    await context.close();
  }
  {
    const { context, page } = await freshPage();
    const first = env.server.requests.length;
    try {
      env.server.setFaults({ status: { code: 404, times: 1000 } });
      await startLoad(page, SPLIT);
      await page.getByTestId('model-failed').waitFor({ timeout: 30_000 });
    } finally {
      env.server.clearFaults();
    }
    assert.match(await page.getByTestId('error').textContent(), /HTTP 404/);
    const tries = env.server.requests.slice(first).filter((r) => /\.gguf$/.test(r.path)).length;
    assert.ok(tries <= 4, `a 404 is not retried (${tries} requests)`);
    await context.close();
  }
});

test('one GGUF URL: fetched as parallel 4 MiB ranges; a server without Range support streams it whole', async () => {
  {
    const { context, page } = await freshPage();
    const first = env.server.requests.length;
    await startLoad(page, SINGLE);
    await ready(page);
    const ranges = env.server.requests.slice(first).filter((r) => r.path === SINGLE).map((r) => r.range);
    assert.ok(ranges.length >= SIZE / CHUNK && ranges.every(Boolean), `ranged requests: ${ranges.length}`);
    assert.equal(await answer(page), await baseline());
    await context.close();
  }
  {
    const { context, page } = await freshPage();
    try {
      env.server.setFaults({ ignoreRange: true });
      await startLoad(page, SINGLE);
      await ready(page);
    } finally {
      env.server.clearFaults();
    }
    assert.equal(await answer(page), await baseline());
    await context.close();
  }
});

test('a second visit loads from the store with zero network requests for the model', async () => {
  const { context, page } = await freshPage();
  await startLoad(page, SPLIT);
  await ready(page);
  await page.reload();
  const first = env.server.requests.length;
  await startLoad(page, SPLIT);
  await ready(page);
  assert.deepEqual(env.server.requests.slice(first).filter((r) => r.path.startsWith('/models/')), []);
  await context.close();
});

test('pause keeps what is stored and resume finishes; cancel deletes it', async () => {
  const { context, page } = await freshPage();
  try {
    env.server.setFaults({ delayMs: 15 });
    await startLoad(page, SPLIT);
    await waitPercent(page, 20);
    await page.getByTestId('download-pause').click();
    await page.getByTestId('model-paused').waitFor({ timeout: 10_000 });
    env.server.clearFaults();
    await page.getByTestId('download-resume').click();
    await ready(page);
  } finally {
    env.server.clearFaults();
  }
  await context.close();

  const other = await freshPage();
  try {
    env.server.setFaults({ delayMs: 15 });
    await startLoad(other.page, SPLIT);
    await waitPercent(other.page, 20);
    assert.ok((await usage(other.page)) > 10_000_000, 'chunks are stored as they arrive');
    await other.page.getByTestId('download-cancel').first().click();
  } finally {
    env.server.clearFaults();
  }
  await other.page.getByTestId('model-progress').waitFor({ state: 'detached', timeout: 10_000 });
  await openModels(other.page);
  await row(other.page, SPLIT).waitFor({ state: 'detached', timeout: 10_000 });
  assert.ok((await usage(other.page)) < 2_000_000, 'a cancelled download leaves nothing stored');
  await other.context.close();
});

test('a model larger than the storage quota is refused before downloading', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { startServer } = await import('../server.mjs');
  const dir = await mkdtemp(join(tmpdir(), 'sprig-huge-'));
  // Under the 64 GiB any manifest may claim, over this context's quota (10 GiB).
  const huge = 60e9;
  await writeFile(join(dir, 'huge.manifest.json'), JSON.stringify({
    name: 'Huge', format: 'gguf', total_size: huge,
    shards: [{ url: env.server.url + SINGLE, size: huge, sha256: 'a'.repeat(64) }],
  }));
  const other = await startServer({ root: dir, cors: true });
  const { context, page } = await freshPage();
  try {
    const first = env.server.requests.length;
    await page.getByTestId('model-select').selectOption('custom');
    await page.getByTestId('model-url').fill(other.url + '/huge.manifest.json');
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-failed').waitFor({ timeout: 30_000 });
    assert.match(await page.getByTestId('error').textContent(), /not enough storage for Huge: it needs 60\.00 GB more/);
    assert.deepEqual(env.server.requests.slice(first).filter((r) => r.path === SINGLE), [], 'nothing was downloaded');
    await openModels(page);
    assert.equal(await page.locator('[data-testid="stored-model"]', { hasText: 'Huge' }).count(), 0);
  } finally {
    await context.close();
    await other.close();
  }
});

test('the Models panel lists the stored model with its size; Delete frees the storage', async () => {
  const { context, page } = await freshPage();
  await startLoad(page, SPLIT);
  await ready(page);
  await openModels(page);
  const r = row(page, SPLIT);
  await r.and(page.locator('[data-state="ready"]')).waitFor({ timeout: 10_000 });
  assert.match(await r.textContent(), /93\.8 MiB · 93\.8 MiB stored/);
  // The whole site: the model and the service worker's app shell (about 9 MiB).
  const used = await page.getByTestId('storage-usage').textContent();
  const shownMib = Number(/This site uses ([\d.]+) MiB of the/.exec(used)?.[1]);
  assert.ok(shownMib >= 90 && shownMib < 93.8 + 20, used);
  assert.ok((await usage(page)) > SIZE * 0.95);
  await r.getByTestId('model-delete').click();
  await r.waitFor({ state: 'detached', timeout: 10_000 });
  assert.ok((await usage(page)) < 2_000_000, 'deleting the model frees its storage');
  await context.close();
});

test('data evicted by the browser reads as "needs download", then downloads again', async () => {
  const { context, page } = await freshPage();
  await startLoad(page, SPLIT);
  await ready(page);
  await page.reload();
  // What eviction does: the shard data goes, whatever records stay.
  const removed = await page.evaluate(async () => {
    const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('sprig-models');
    let n = 0;
    for await (const [, model] of root.entries()) {
      for await (const name of model.keys()) if (name.endsWith('.data')) { await model.removeEntry(name); n++; }
    }
    return n;
  });
  assert.equal(removed, 3);
  await page.reload();
  await openModels(page);
  const r = row(page, SPLIT);
  await r.and(page.locator('[data-state="needs-download"]')).waitFor({ timeout: 10_000 });
  await r.getByTestId('models-load').click();
  await ready(page);
  assert.equal(await answer(page), await baseline());
  await context.close();
});

test('a GGUF file picked from the device loads in place, with no request for it', async () => {
  const { context, page } = await freshPage();
  const first = env.server.requests.length;
  const file = fileURLToPath(new URL('../../models/SmolLM2-135M-Instruct.Q4_1.gguf', import.meta.url));
  await page.getByTestId('model-file').setInputFiles(file);
  await ready(page);
  assert.deepEqual(env.server.requests.slice(first).filter((r) => r.path.startsWith('/models/')), []);
  assert.equal(await answer(page), await baseline());
  assert.ok((await usage(page)) < 2_000_000, 'a local file is not copied into the store');
  await context.close();
});
