// Models hosted on a model hub, end to end: the demo model in a repository of
// tests/server.mjs's hub (a second origin), whose file URLs answer 302 to a
// CDN on a third origin with a URL signed for that request only. The worker
// must follow the redirects for the manifest and every range, resolve shard
// URLs against the hub's URL (never the signed one), resume a cut download
// through the hub with a fresh signature, and start a file over when its
// ETag changes mid-download. Each test ends in a chat with the same greedy
// reply as a clean load from Sprig's own origin.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHub } from '../server.mjs';
import { useDistAndBrowser } from './browser.mjs';
import { cleanReply, freshPage as openApp, greedyAnswer as answer, percent, startUrl, waitPercent, waitReady } from './app.mjs';

const REPO = 'sprig/SmolLM2-135M-Instruct';
const MODELS = fileURLToPath(new URL('../../models/', import.meta.url));
const MANIFEST = 'split/SmolLM2-135M-Instruct.Q4_1.manifest.json';
const SINGLE = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const SIZE = 98_362_432;
const CHUNK = 4 << 20;
const env = await useDistAndBrowser();
const hub = {};
/** A fresh browser context (own storage) and page on the app. */
const freshPage = () => openApp(env.browser, env.server.url);
/** The reply after a clean load of the demo from Sprig's own origin: every hub load must match it. */
const baseline = cleanReply(freshPage);

before(async () => {
  hub.server = await startHub({ repos: { [REPO]: MODELS } });
});
after(async () => {
  await hub.server?.close();
});

/** Waits until the download reaches `p` %, and checks it did. */
async function reachPercent(page, p) {
  await waitPercent(page, p);
  assert.ok((await percent(page)) >= p, `the download reached ${p} %`);
}

/** Where the logs of the hub and the CDN stand now, to take what follows with `since`. */
const mark = () => ({ hub: hub.server.requests.length, cdn: hub.server.cdn.requests.length, app: env.server.requests.length });
/** The requests logged since `m`, but CORS preflights (the browser's, if it sends any). */
const since = (m) => {
  const after = (log, from) => log.slice(from).filter((r) => r.method !== 'OPTIONS');
  return { hub: after(hub.server.requests, m.hub), cdn: after(hub.server.cdn.requests, m.cdn), app: after(env.server.requests, m.app) };
};

/** The repository path a hub log entry asks for. */
const repoPath = (entry) => decodeURIComponent(entry.path.replace(`/${REPO}/resolve/main/`, ''));

/** Checks what every hub load has in common: redirects only, each signed anew, no refusal, nothing from Sprig's origin. */
function assertHubTraffic(log) {
  assert.ok(log.hub.length > 0);
  assert.deepEqual(log.hub.filter((r) => r.status !== 302).map((r) => [r.path, r.status]), [], 'the hub only redirects');
  const locations = log.hub.map((r) => r.location);
  assert.equal(new Set(locations).size, locations.length, 'every redirect is signed anew');
  assert.deepEqual(log.cdn.filter((r) => r.status === 403 || r.status === 404).map((r) => [r.path, r.status]), [], 'no stale or wrong URL reached the CDN');
  const signatures = log.cdn.filter((r) => r.signature).map((r) => r.signature);
  assert.equal(new Set(signatures).size, signatures.length, 'each CDN request came through the hub (no signed URL reused)');
  assert.deepEqual(log.app.filter((r) => r.path.startsWith('/models/')).map((r) => r.path), [], 'nothing from Sprig\'s own models');
}

test('a manifest on the hub: fetched through the redirect, its shards resolved against the hub URL, every range freshly signed; the model chats', async () => {
  const clean = await baseline();
  const { context, page, errors } = await freshPage();
  const m = mark();
  await startUrl(page, hub.server.fileUrl(REPO, MANIFEST));
  await waitReady(page);
  const log = since(m);
  assertHubTraffic(log);
  const asked = new Set(log.hub.map(repoPath));
  const shards = [1, 2, 3].map((i) => `split/SmolLM2-135M-Instruct.Q4_1-0000${i}-of-00003.gguf`);
  assert.deepEqual([...asked].sort(), [MANIFEST, ...shards].sort(), 'the manifest and its shards, all at the hub');
  const ranged = log.hub.filter((r) => r.path.endsWith('.gguf'));
  assert.ok(ranged.length >= SIZE / CHUNK && ranged.every((r) => r.range), `every shard request is a range through the hub (${ranged.length})`);
  const fetched = log.cdn.filter((r) => r.path.endsWith('.gguf'));
  assert.equal(fetched.length, ranged.length, 'each one followed to the CDN');
  assert.ok(fetched.every((r) => r.status === 206));
  assert.equal(await answer(page), clean);
  assert.deepEqual(errors.filter((e) => !/Failed to load resource|ERR_/.test(e)), []);
  await context.close();
});

test('one GGUF URL on the hub: probed and fetched as ranges through the redirect; the model chats', async () => {
  const clean = await baseline();
  const { context, page } = await freshPage();
  const m = mark();
  await startUrl(page, hub.server.fileUrl(REPO, SINGLE));
  await waitReady(page);
  const log = since(m);
  assertHubTraffic(log);
  assert.deepEqual([...new Set(log.hub.map(repoPath))], [SINGLE]);
  assert.equal(log.hub[0].range, 'bytes=0-3', 'a four-byte probe first');
  assert.ok(log.hub.length >= 1 + SIZE / CHUNK && log.hub.every((r) => r.range), `ranges (${log.hub.length})`);
  assert.equal(new Set(log.cdn.map((r) => r.path)).size, 1, 'one version of the file');
  assert.ok(hub.server.cdn.bytesServed(/\.gguf$/) > 0);
  assert.equal(await answer(page), clean);
  await context.close();
});

test('a download cut mid-way resumes through the hub on fresh signed URLs; paused, with every signature revoked, it resumes again', async () => {
  const clean = await baseline();
  const { context, page } = await freshPage();
  const cdn = hub.server.cdn;
  const m = mark();
  const served = () => since(m).cdn.reduce((sum, r) => sum + r.bytes, 0);
  try {
    cdn.setFaults({ cutAfter: [Math.floor(SIZE * 0.3) + 12_345], delayMs: 20 });
    await startUrl(page, hub.server.fileUrl(REPO, SINGLE));
    await reachPercent(page, 55);
    // The cut range was asked again at the hub and fetched from another signed URL.
    const log = since(m);
    const cut = log.cdn.filter((r) => r.cut);
    assert.equal(cut.length, 1, 'the cut happened');
    const again = log.cdn.filter((r) => r.range === cut[0].range && !r.cut);
    assert.equal(again.length, 1, `the cut range ${cut[0].range} was fetched again`);
    assert.equal(again[0].status, 206);
    assert.notEqual(again[0].signature, cut[0].signature, 'on a fresh signed URL');
    assert.equal(log.hub.filter((r) => r.range === cut[0].range).length, 2, 'through the hub both times');
    // Pause, then revoke every signed URL given so far: a worker reusing one is refused.
    await page.getByTestId('download-pause').click();
    await page.getByTestId('model-paused').waitFor({ timeout: 10_000 });
    cdn.clearFaults();
    hub.server.expireSignatures();
    await page.getByTestId('download-resume').click();
    await waitReady(page);
  } finally {
    cdn.clearFaults();
  }
  assertHubTraffic(since(m));
  // Resumed, never restarted: the ETag matched across signed URLs. At most
  // the cut chunk and the chunks in flight at the pause came twice.
  assert.ok(served() <= SIZE + 5 * CHUNK + 10_000, `served ${served()} bytes for a ${SIZE}-byte file`);
  assert.equal(await answer(page), clean);
  await context.close();
});

test('the file replaced on the hub mid-download (a new ETag): the download starts over and stores only the new version; the model chats', async () => {
  const clean = await baseline();
  // The new version: the demo with another general.name, so other bytes and the same weights.
  const dir = await mkdtemp(join(tmpdir(), 'sprig-hub-'));
  const v2 = join(dir, SINGLE);
  const bytes = await readFile(join(MODELS, SINGLE));
  const key = bytes.indexOf('general.name');
  assert.ok(key > 0 && key < 4096 && bytes.readUInt32LE(key + 12) === 8, 'general.name is a string near the start');
  const last = key + 24 + Number(bytes.readBigUInt64LE(key + 16)) - 1;
  bytes[last] = bytes[last] === 0x41 ? 0x42 : 0x41;
  await writeFile(v2, bytes);
  const want = createHash('sha256').update(bytes).digest('hex');
  const { context, page } = await freshPage();
  const cdn = hub.server.cdn;
  const m = mark();
  try {
    cdn.setFaults({ delayMs: 15 });
    const url = hub.server.fileUrl(REPO, SINGLE);
    await startUrl(page, url);
    await reachPercent(page, 30);
    await hub.server.replace(REPO, SINGLE, v2);
    const atSwap = mark();
    cdn.clearFaults();
    await waitReady(page);
    const before = since(m).cdn.slice(0, atSwap.cdn - m.cdn);
    const after = since(atSwap);
    const oldBlob = before[0].path;
    const newBlobs = [...new Set(after.hub.map((r) => new URL(r.location).pathname))];
    assert.equal(newBlobs.length, 1);
    assert.notEqual(newBlobs[0], oldBlob, 'the hub now redirects to another object');
    const sum = (path) => since(m).cdn.filter((r) => r.path === path).reduce((n, r) => n + r.bytes, 0);
    assert.ok(sum(oldBlob) < SIZE, `the old version was only partly downloaded (${sum(oldBlob)} bytes)`);
    assert.ok(sum(newBlobs[0]) >= SIZE, `the new version was downloaded whole, afresh (${sum(newBlobs[0])} bytes)`);
    assertHubTraffic(since(m));
    // What is stored is the new version, byte for byte, under the new ETag.
    await page.reload();
    const stored = await page.evaluate(async (url) => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('sprig-models');
      for await (const [, model] of root.entries()) {
        const meta = JSON.parse(await (await (await model.getFileHandle('meta.json')).getFile()).text());
        if (meta.source?.url !== url) continue;
        const data = await (await model.getFileHandle('file.data')).getFile();
        const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', await data.arrayBuffer()));
        return { etag: meta.etag, size: data.size, sha256: [...hash].map((b) => b.toString(16).padStart(2, '0')).join('') };
      }
      return null;
    }, url);
    assert.ok(stored, 'the model is in the store');
    assert.equal(stored.size, SIZE);
    assert.equal(stored.sha256, want, "the stored bytes are the new version's");
    assert.equal(stored.etag, (await fetch(url, { redirect: 'manual' })).headers.get('x-linked-etag'), 'recorded under the new ETag');
    // It loads from the store with no request to the hub, and chats.
    const warm = mark();
    await startUrl(page, url);
    await waitReady(page);
    assert.deepEqual(since(warm).hub, []);
    assert.equal(await answer(page), clean);
  } finally {
    cdn.clearFaults();
    await context.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
});
