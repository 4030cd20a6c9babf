// The test server's own behaviour: Range parsing, answers over real HTTP, and
// the injected network faults the download tests rely on, and hub mode (a
// model hub redirecting to a CDN with signed URLs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { faultsFromJson, parseRange, startHub, startServer } from './server.mjs';

test('parseRange handles the forms of a single byte range', () => {
  assert.equal(parseRange(undefined, 10), null);
  assert.deepEqual(parseRange('bytes=0-3', 10), { start: 0, end: 3 });
  assert.deepEqual(parseRange('bytes=4-', 10), { start: 4, end: 9 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  assert.equal(parseRange('bytes=10-', 10), 'bad');
  assert.equal(parseRange('items=0-1', 10), 'bad');
});

test('the server answers ranges with 206 and logs requests', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sprig-server-'));
  await writeFile(join(dir, 'a.bin'), 'abcdefghij');
  const s = await startServer({ root: dir });
  try {
    const full = await fetch(s.url + '/a.bin');
    assert.equal(full.status, 200);
    assert.equal(await full.text(), 'abcdefghij');
    const part = await fetch(s.url + '/a.bin', { headers: { range: 'bytes=2-4' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), 'bytes 2-4/10');
    assert.equal(await part.text(), 'cde');
    assert.equal((await fetch(s.url + '/missing')).status, 404);
    assert.equal((await fetch(s.url + '/../etc/passwd')).status, 404);
    assert.deepEqual(s.requests.map((r) => r.path), ['/a.bin', '/a.bin', '/missing', '/etc/passwd']);
    assert.deepEqual(s.requests.map((r) => [r.status, r.bytes]), [[200, 10], [206, 3], [404, 0], [404, 0]]);
  } finally {
    await s.close();
    await rm(dir, { recursive: true });
  }
});

// ---- Faults, against a few MB of "model" served with CORS on. ----

const MiB = 1024 * 1024;
const SIZE = 3 * MiB + 12_345; // not a multiple of the 64 KiB write size
const MODEL = new Uint8Array(SIZE).map((_, i) => (i * 7919 + (i >> 13)) & 0xff); // varied, reproducible bytes
const ctx = {};

before(async () => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'sprig-faults-'));
  await writeFile(join(ctx.dir, 'model.gguf'), MODEL);
  await writeFile(join(ctx.dir, 'app.js'), 'export const ok = 1;\n');
  ctx.server = await startServer({ root: ctx.dir, cors: true });
});

after(async () => {
  await ctx.server.close();
  await rm(ctx.dir, { recursive: true });
});

/** A fresh log and no faults for each test on the shared server. */
function fresh() {
  const s = ctx.server;
  s.clearFaults();
  s.requests.length = 0;
  return s;
}

/** GETs `path` on the test server (with an optional byte range) and reads the body to its end or its error. */
const get = (path, options) => getUrl(ctx.server.url + path, options);

/** GETs an absolute `url` (following redirects), with an optional byte range, reading the body to its end or its error. */
async function getUrl(url, { range, headers = {}, signal } = {}) {
  if (range) headers.range = `bytes=${range[0]}-${range[1]}`;
  const res = await fetch(url, { headers, signal });
  const parts = [];
  let error = null;
  try {
    for await (const part of res.body) parts.push(part);
  } catch (e) {
    error = e;
  }
  return { res, body: Buffer.concat(parts), error };
}

/** The bytes of MODEL from `start` through `end`. */
const slice = (start, end) => Buffer.from(MODEL.subarray(start, end + 1));

test('a cut drops the connection after exactly the allowed bytes, once', async () => {
  const s = fresh();
  s.setFaults({ cutAfter: [1_000_003] });
  const cutOne = await get('/model.gguf');
  assert.equal(cutOne.res.status, 200);
  assert.equal(cutOne.res.headers.get('content-length'), String(SIZE));
  assert.ok(cutOne.error, 'reading the cut body fails');
  assert.equal(cutOne.body.length, 1_000_003);
  assert.deepEqual(cutOne.body, slice(0, 1_000_002));
  assert.deepEqual(s.requests[0], {
    method: 'GET', path: '/model.gguf', range: null,
    status: 200, bytes: 1_000_003, cut: true, corrupted: false, aborted: false,
  });
  // The offset has fired: the retry goes through whole.
  const retry = await get('/model.gguf');
  assert.equal(retry.error, null);
  assert.deepEqual(retry.body, Buffer.from(MODEL));
  assert.equal(s.requests[1].cut, false);
  assert.equal(s.requests[1].bytes, SIZE);
});

test('cut offsets count body bytes over all matching responses', async () => {
  const s = fresh();
  // Ranges of 1 MiB: the first cut falls mid-way through the second range; the
  // second cut falls exactly where the third range ends, so it is the next
  // response that would send that byte which is cut, before its first byte.
  s.setFaults({ cutAfter: [2.5 * MiB, 1.5 * MiB] });
  const r0 = await get('/model.gguf', { range: [0, MiB - 1] });
  assert.equal(r0.error, null);
  assert.equal(r0.body.length, MiB);
  const r1 = await get('/model.gguf', { range: [MiB, 2 * MiB - 1] });
  assert.equal(r1.res.status, 206);
  assert.ok(r1.error);
  assert.deepEqual(r1.body, slice(MiB, 1.5 * MiB - 1));
  assert.equal((await get('/app.js')).error, null, 'other files are not counted nor cut');
  const r2 = await get('/model.gguf', { range: [2 * MiB, 3 * MiB - 1] });
  assert.equal(r2.error, null);
  assert.equal(r2.body.length, MiB);
  const r3 = await get('/model.gguf', { range: [MiB, 2 * MiB - 1] });
  assert.equal(r3.res.status, 206, 'the headers went out before the cut');
  assert.ok(r3.error);
  assert.equal(r3.body.length, 0);
  const r4 = await get('/model.gguf', { range: [MiB, 2 * MiB - 1] });
  assert.equal(r4.error, null);
  assert.deepEqual(r4.body, slice(MiB, 2 * MiB - 1));
  assert.deepEqual(s.requests.map((r) => [r.path, r.bytes, r.cut]), [
    ['/model.gguf', MiB, false],
    ['/model.gguf', 0.5 * MiB, true],
    ['/app.js', 21, false],
    ['/model.gguf', MiB, false],
    ['/model.gguf', 0, true],
    ['/model.gguf', MiB, false],
  ]);
});

test('a cut among parallel range requests breaks exactly one of them', async () => {
  const s = fresh();
  s.setFaults({ cutAfter: [MiB + 777] });
  const ranges = [0, 1, 2].map((i) => [i * MiB, (i + 1) * MiB - 1]);
  const results = await Promise.all(ranges.map((range) => get('/model.gguf', { range })));
  assert.equal(results.filter((r) => r.error).length, 1);
  for (const [i, r] of results.entries()) {
    const entry = s.requests.find((e) => e.range === `bytes=${ranges[i][0]}-${ranges[i][1]}`);
    assert.equal(entry.cut, Boolean(r.error));
    assert.equal(entry.bytes, r.body.length, 'the log counts what the client got');
    assert.deepEqual(r.body, slice(ranges[i][0], ranges[i][0] + r.body.length - 1));
  }
  // Everything sent before the cut fired adds up to its offset; the others then finished.
  const cutEntry = s.requests.find((e) => e.cut);
  assert.equal(s.bytesServed(/\.gguf$/), 3 * MiB - (MiB - cutEntry.bytes));
  assert.ok(s.bytesServed() >= MiB + 777);
});

test('corrupt flips one byte, only in bodies that carry it, only `times` times', async () => {
  const s = fresh();
  const K = 1_234_567;
  s.setFaults({ corrupt: { offset: K, times: 1 } });
  const before = await get('/model.gguf', { range: [0, MiB - 1] });
  assert.deepEqual(before.body, slice(0, MiB - 1), 'a range without the byte is intact');
  const hit = await get('/model.gguf', { range: [MiB, 2 * MiB - 1] });
  const expected = slice(MiB, 2 * MiB - 1);
  expected[K - MiB] ^= 0xff;
  assert.deepEqual(hit.body, expected);
  const again = await get('/model.gguf', { range: [MiB, 2 * MiB - 1] });
  assert.deepEqual(again.body, slice(MiB, 2 * MiB - 1), 'times: 1 is used up');
  assert.deepEqual(s.requests.map((r) => r.corrupted), [false, true, false]);

  fresh().setFaults({ corrupt: { path: 'model', offset: K, times: Infinity } });
  const whole = Buffer.from(MODEL);
  whole[K] ^= 0xff;
  for (let i = 0; i < 3; i++) assert.deepEqual((await get('/model.gguf')).body, whole);
  assert.deepEqual(s.requests.map((r) => r.corrupted), [true, true, true]);

  fresh().setFaults({ corrupt: { path: /nothing-here/, offset: K } });
  assert.deepEqual((await get('/model.gguf')).body, Buffer.from(MODEL), 'only matching paths are corrupted');
});

test('status answers the next `times` matching requests, then the file', async () => {
  const s = fresh();
  s.setFaults({ status: { code: 503, times: 2 } });
  const first = await get('/model.gguf', { range: [0, 99] });
  assert.equal(first.res.status, 503);
  assert.equal(first.res.headers.get('access-control-allow-origin'), '*', 'the page can read the status');
  assert.match(first.body.toString(), /503/);
  assert.equal((await get('/app.js')).res.status, 200, 'other files are answered normally');
  assert.equal((await get('/model.gguf')).res.status, 503);
  const third = await get('/model.gguf', { range: [0, 99] });
  assert.equal(third.res.status, 206);
  assert.deepEqual(third.body, slice(0, 99));
  assert.deepEqual(s.requests.map((r) => [r.status, r.bytes]), [[503, 0], [200, 21], [503, 0], [206, 100]]);

  fresh().setFaults({ match: 'app', status: { code: 404 } });
  assert.equal((await get('/app.js')).res.status, 404);
  assert.equal((await get('/app.js')).res.status, 200);
});

test('ignoreRange answers a range request with 200 and the whole file', async () => {
  const s = fresh();
  s.setFaults({ ignoreRange: true });
  const r = await get('/model.gguf', { range: [MiB, 2 * MiB - 1] });
  assert.equal(r.res.status, 200);
  assert.equal(r.res.headers.get('content-range'), null);
  assert.equal(r.res.headers.get('content-length'), String(SIZE));
  assert.deepEqual(r.body, Buffer.from(MODEL));
  assert.equal((await get('/app.js', { range: [0, 5] })).res.status, 206, 'only matching paths');
  s.clearFaults();
  assert.equal((await get('/model.gguf', { range: [0, 5] })).res.status, 206);
});

test('If-Range that names another version gets 200 and the whole file', async () => {
  fresh();
  const head = await fetch(ctx.server.url + '/model.gguf', { method: 'HEAD' });
  const etag = head.headers.get('etag');
  const lastModified = head.headers.get('last-modified');
  assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/);
  assert.ok(!Number.isNaN(Date.parse(lastModified)));
  const same = await get('/model.gguf', { range: [10, 19], headers: { 'if-range': etag } });
  assert.equal(same.res.status, 206);
  assert.deepEqual(same.body, slice(10, 19));
  const byDate = await get('/model.gguf', { range: [10, 19], headers: { 'if-range': lastModified } });
  assert.equal(byDate.res.status, 206);
  const other = await get('/model.gguf', { range: [10, 19], headers: { 'if-range': '"stale-1"' } });
  assert.equal(other.res.status, 200);
  assert.deepEqual(other.body, Buffer.from(MODEL));
  const weak = await get('/model.gguf', { range: [10, 19], headers: { 'if-range': 'W/' + etag } });
  assert.equal(weak.res.status, 200, 'a weak validator never matches');
});

test('CORS: preflights are answered and the range headers are exposed', async () => {
  const s = fresh();
  const pre = await fetch(s.url + '/model.gguf', {
    method: 'OPTIONS',
    headers: {
      origin: 'http://elsewhere.test',
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'range, if-range',
    },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.equal(pre.headers.get('access-control-allow-methods'), 'GET, HEAD');
  assert.equal(pre.headers.get('access-control-allow-headers'), 'range, if-range');
  const r = await get('/model.gguf', { range: [0, 9] });
  const exposed = r.res.headers.get('access-control-expose-headers').split(/,\s*/);
  for (const h of ['content-length', 'content-range', 'accept-ranges', 'etag']) assert.ok(exposed.includes(h), h);
  assert.equal((await get('/missing.gguf')).res.headers.get('access-control-allow-origin'), '*');
  assert.deepEqual(s.requests.map((e) => [e.method, e.status]), [['OPTIONS', 204], ['GET', 206], ['GET', 404]]);
});

test('bytesServed sums the body bytes sent to matching paths', async () => {
  const s = fresh();
  await get('/model.gguf', { range: [0, 999] });
  await get('/model.gguf', { range: [5000, 5099] });
  await get('/app.js');
  await fetch(s.url + '/model.gguf', { method: 'HEAD' });
  assert.equal(s.bytesServed(/\.gguf$/), 1100);
  assert.equal(s.bytesServed('app'), 21);
  assert.equal(s.bytesServed(), 1121);
});

test('delayMs paces a body so a download can be interrupted', async () => {
  const s = fresh();
  s.setFaults({ delayMs: 50 });
  const started = Date.now();
  const ok = await get('/model.gguf', { range: [0, 256 * 1024 - 1] }); // 4 writes, 3 pauses
  assert.ok(Date.now() - started >= 140, 'the writes were paced');
  assert.equal(ok.body.length, 256 * 1024);
  // Now stop a whole-file download after its first bytes.
  const abort = new AbortController();
  const res = await fetch(s.url + '/model.gguf', { signal: abort.signal });
  const reader = res.body.getReader();
  await reader.read();
  abort.abort();
  await assert.rejects(reader.read());
  const entry = s.requests[1];
  while (!entry.aborted) await new Promise((ok) => setTimeout(ok, 10));
  assert.equal(entry.cut, false);
  assert.ok(entry.bytes > 0 && entry.bytes < SIZE, `${entry.bytes} bytes`);
});

test('setFaults rejects what it does not understand', () => {
  const s = fresh();
  assert.throws(() => s.setFaults({ cutafter: [1] }), /unknown fault "cutafter"/);
  assert.throws(() => s.setFaults({ cutAfter: [-1] }), /bad cutAfter/);
  assert.throws(() => s.setFaults({ corrupt: { times: 1 } }), /bad corrupt.offset/);
  assert.throws(() => s.setFaults({ status: { code: 42 } }), /bad status.code/);
  assert.deepEqual(faultsFromJson('{"match":"shard-0\\\\d\\\\.gguf$","corrupt":{"offset":1,"times":"Infinity"}}'), {
    match: /shard-0\d\.gguf$/,
    corrupt: { offset: 1, times: 'Infinity' },
  });
});

test('the command line serves a root and takes --faults', async () => {
  const script = fileURLToPath(new URL('./server.mjs', import.meta.url));
  const faults = JSON.stringify({ match: '\\.gguf$', status: { code: 500, times: 1 } });
  const child = spawn(process.execPath, [script, '--root', ctx.dir, '--port', '0', '--cors', '--faults', faults], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const [line] = await once(createInterface({ input: child.stdout }), 'line');
    const m = /^serving (.+) at (http:\/\/\S+)$/.exec(line);
    assert.ok(m, line);
    assert.equal(m[1], ctx.dir);
    assert.equal((await fetch(m[2] + '/model.gguf')).status, 500);
    const res = await fetch(m[2] + '/model.gguf', { headers: { range: 'bytes=0-3' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), slice(0, 3));
  } finally {
    child.kill();
    await once(child, 'exit');
  }
});

// ---- Hub mode: a model hub redirecting to a CDN on a third origin. ----

/** A hub serving ctx.dir as repository sprig/demo; closed by the caller. */
const hubOf = (options = {}) => startHub({ repos: { 'sprig/demo': ctx.dir }, ...options });

/** The query of a signed CDN URL, as an object. */
const signed = (location) => Object.fromEntries(new URL(location).searchParams);

test('hub: a file URL answers 302 with CORS to a freshly signed CDN URL, which serves ranges with the ETag', async () => {
  const hub = await hubOf();
  try {
    const url = hub.fileUrl('sprig/demo', 'model.gguf');
    assert.equal(url, `${hub.url}/sprig/demo/resolve/main/model.gguf`);
    const a = await fetch(url, { redirect: 'manual', headers: { range: 'bytes=0-9' } });
    const b = await fetch(url, { redirect: 'manual', method: 'HEAD' });
    for (const r of [a, b]) {
      assert.equal(r.status, 302);
      assert.equal(r.headers.get('access-control-allow-origin'), '*');
      assert.ok(r.headers.get('access-control-expose-headers').split(/,\s*/).includes('x-linked-etag'));
      assert.equal(r.headers.get('x-linked-size'), String(SIZE));
      const to = new URL(r.headers.get('location'));
      assert.equal(to.origin, hub.cdn.url, 'the CDN is a third origin');
      assert.notEqual(to.origin, hub.url);
      assert.match(to.pathname, /^\/blobs\/[0-9a-f]{32}\/model\.gguf$/);
      assert.deepEqual(Object.keys(signed(to)), ['Expires', 'X-Amz-Nonce', 'X-Amz-Signature']);
    }
    assert.notEqual(a.headers.get('location'), b.headers.get('location'), 'every redirect is signed anew');
    assert.equal(new URL(a.headers.get('location')).pathname, new URL(b.headers.get('location')).pathname, 'same version, same object');
    // Followed, as a browser does: the CDN answers the range, with the linked ETag.
    const part = await fetch(url, { headers: { range: `bytes=${MiB}-${MiB + 99}` } });
    assert.equal(part.status, 206);
    assert.ok(part.redirected);
    assert.equal(part.headers.get('content-range'), `bytes ${MiB}-${MiB + 99}/${SIZE}`);
    assert.equal(part.headers.get('etag'), a.headers.get('x-linked-etag'));
    const exposed = part.headers.get('access-control-expose-headers').split(/,\s*/);
    for (const h of ['content-length', 'content-range', 'accept-ranges', 'etag']) assert.ok(exposed.includes(h), h);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), slice(MiB, MiB + 99));
    assert.deepEqual(hub.requests.map((r) => [r.method, r.path, r.range, r.status]), [
      ['GET', '/sprig/demo/resolve/main/model.gguf', 'bytes=0-9', 302],
      ['HEAD', '/sprig/demo/resolve/main/model.gguf', null, 302],
      ['GET', '/sprig/demo/resolve/main/model.gguf', `bytes=${MiB}-${MiB + 99}`, 302],
    ]);
    assert.equal(hub.cdn.requests.length, 1);
    assert.equal(hub.cdn.requests[0].signature, signed(hub.requests[2].location)['X-Amz-Signature']);
    // Unknown files, repositories and paths out of the repository are 404s with CORS.
    for (const path of ['/sprig/demo/resolve/main/nothing.gguf', '/other/repo/resolve/main/model.gguf', '/sprig/demo/resolve/main/..%2f..%2fetc%2fpasswd', '/sprig/demo/model.gguf']) {
      const r = await fetch(hub.url + path, { redirect: 'manual' });
      assert.equal(r.status, 404, path);
      assert.equal(r.headers.get('access-control-allow-origin'), '*');
    }
    // Preflights, on both origins.
    for (const origin of [hub.url, hub.cdn.url]) {
      const pre = await fetch(origin + '/anything', {
        method: 'OPTIONS',
        headers: { origin: 'http://elsewhere.test', 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' },
      });
      assert.equal(pre.status, 204);
      assert.match(pre.headers.get('access-control-allow-headers'), /range/);
    }
  } finally {
    await hub.close();
  }
});

test('hub: the CDN refuses malformed, altered, expired and revoked signatures', async () => {
  const hub = await hubOf({ ttlMs: 300 });
  try {
    const url = hub.fileUrl('sprig/demo', 'model.gguf');
    const location = async () => (await fetch(url, { redirect: 'manual' })).headers.get('location');
    const status = async (to) => {
      const r = await fetch(to, { headers: { range: 'bytes=0-3' } });
      assert.equal(r.headers.get('access-control-allow-origin'), '*', 'the page can read the refusal');
      return [r.status, r.status === 403 ? (await r.text()).trim() : null];
    };
    const good = await location();
    assert.deepEqual(await status(good), [206, null]);
    assert.deepEqual(await status(good), [206, null], 'a signed URL may be used again until it expires');
    const bare = good.split('?')[0];
    assert.deepEqual(await status(bare), [403, 'AccessDenied: malformed signature']);
    assert.deepEqual(await status(good.replace(/Expires=\d+/, 'Expires=soon')), [403, 'AccessDenied: malformed signature']);
    assert.deepEqual(await status(good.replace(/Expires=(\d+)/, (_, n) => `Expires=${Number(n) + 60_000}`)), [403, 'AccessDenied: the signature does not match']);
    // Resolved against the signed URL, a sibling name loses the signature.
    assert.deepEqual(await status(new URL('app.js', good).href), [403, 'AccessDenied: malformed signature']);
    await new Promise((ok) => setTimeout(ok, 400));
    assert.deepEqual(await status(good), [403, 'AccessDenied: the request has expired']);
    assert.equal((await fetch(url, { headers: { range: 'bytes=0-3' } })).status, 206, 'through the hub again: a fresh URL');
  } finally {
    await hub.close();
  }
  const long = await hubOf();
  try {
    const url = long.fileUrl('sprig/demo', 'model.gguf');
    const old = (await fetch(url, { redirect: 'manual' })).headers.get('location');
    long.expireSignatures();
    assert.equal((await fetch(old)).status, 403);
    assert.equal((await fetch(url, { headers: { range: 'bytes=0-3' } })).status, 206);
    assert.deepEqual(long.cdn.requests.map((r) => r.status), [403, 206]);
  } finally {
    await long.close();
  }
});

test('hub: a file replaced mid-download gets a new ETag; URLs signed before still reach the old version', async () => {
  const hub = await hubOf();
  const v2 = join(ctx.dir, 'model-v2.bin');
  const NEW = Buffer.from(MODEL).map((b) => b ^ 0x55);
  await writeFile(v2, NEW);
  try {
    const url = hub.fileUrl('sprig/demo', 'model.gguf');
    const first = await fetch(url, { headers: { range: 'bytes=0-99' } });
    const oldTag = first.headers.get('etag');
    assert.deepEqual(Buffer.from(await first.arrayBuffer()), slice(0, 99));
    const before = (await fetch(url, { redirect: 'manual' })).headers.get('location');
    await hub.replace('sprig/demo', 'model.gguf', v2);
    const hop = await fetch(url, { redirect: 'manual' });
    const newTag = hop.headers.get('x-linked-etag');
    assert.notEqual(newTag, oldTag);
    assert.notEqual(new URL(hop.headers.get('location')).pathname, new URL(before).pathname, 'another object');
    const second = await fetch(url, { headers: { range: 'bytes=100-199' } });
    assert.equal(second.headers.get('etag'), newTag);
    assert.deepEqual(Buffer.from(await second.arrayBuffer()), NEW.subarray(100, 200));
    const stale = await fetch(before, { headers: { range: 'bytes=100-199' } });
    assert.equal(stale.headers.get('etag'), oldTag);
    assert.deepEqual(Buffer.from(await stale.arrayBuffer()), slice(100, 199));
    // If-Range with the old ETag: the whole new version.
    const whole = await fetch(url, { headers: { range: 'bytes=0-9', 'if-range': oldTag } });
    assert.equal(whole.status, 200);
    assert.equal((await whole.arrayBuffer()).byteLength, SIZE);
    await hub.replace('sprig/demo', 'model.gguf', v2);
    assert.notEqual((await fetch(url, { redirect: 'manual' })).headers.get('x-linked-etag'), newTag, 'every replacement is a new version');
    await assert.rejects(hub.replace('no/repo', 'model.gguf', v2), /no repository no\/repo/);
  } finally {
    await hub.close();
    await rm(v2);
  }
});

test('hub: the CDN keeps the fault machinery; the hub has its own', async () => {
  const hub = await hubOf();
  try {
    const url = hub.fileUrl('sprig/demo', 'model.gguf');
    hub.cdn.setFaults({ cutAfter: [1000] });
    const cutOne = await getUrl(url);
    assert.ok(cutOne.error);
    assert.equal(cutOne.body.length, 1000);
    assert.equal(hub.cdn.requests[0].cut, true);
    const again = await getUrl(url, { range: [0, MiB - 1] });
    assert.equal(again.error, null);
    assert.deepEqual(again.body, slice(0, MiB - 1));
    assert.notEqual(hub.cdn.requests[1].signature, hub.cdn.requests[0].signature, 'the retry went through the hub');
    assert.equal(hub.cdn.bytesServed(/\.gguf$/), 1000 + MiB);
    hub.cdn.clearFaults();
    hub.setFaults({ status: { code: 503, times: 1 } });
    assert.equal((await fetch(url, { redirect: 'manual' })).status, 503);
    assert.equal((await fetch(url, { redirect: 'manual' })).status, 302);
  } finally {
    await hub.close();
  }
  await assert.rejects(startHub({ repos: { nope: ctx.dir } }), /not ORG\/REPO/);
});

test('the command line serves a hub with --hub', async () => {
  const script = fileURLToPath(new URL('./server.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, '--root', ctx.dir, '--port', '0', '--hub', `sprig/demo=${ctx.dir}`, '--cdn-faults', '{"status":{"code":500}}'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    assert.match((await lines.next()).value, /^serving .+ at http:\/\/\S+$/);
    const m = /^hub repository sprig\/demo \((.+)\) at (http:\/\/\S+\/sprig\/demo\/resolve\/main\/), CDN at (http:\/\/\S+)$/.exec((await lines.next()).value);
    assert.ok(m);
    assert.equal(m[1], ctx.dir);
    const url = m[2] + 'model.gguf';
    const hop = await fetch(url, { redirect: 'manual' });
    assert.equal(hop.status, 302);
    assert.ok(hop.headers.get('location').startsWith(m[3] + '/blobs/'));
    assert.equal((await fetch(url)).status, 500, 'the CDN faults');
    const res = await fetch(url, { headers: { range: 'bytes=0-3' } });
    assert.equal(res.status, 206);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), slice(0, 3));
  } finally {
    child.kill();
    await once(child, 'exit');
  }
});
