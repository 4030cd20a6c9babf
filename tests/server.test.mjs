// The test server's own behaviour: Range parsing and answers over real HTTP.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRange, startServer } from './server.mjs';

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
  } finally {
    await s.close();
  }
});
