// The page spawns the model worker, sends it a typed request and shows its typed answer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectErrors, useDistAndBrowser } from './browser.mjs';

const env = await useDistAndBrowser();

test('the worker round-trips a hello and the page shows its answer', async () => {
  const page = await env.browser.newPage();
  const errors = collectErrors(page);
  const workers = [];
  page.on('worker', (w) => workers.push(new URL(w.url()).pathname));
  await page.goto(env.server.url + '/');
  const hello = page.getByTestId('worker-hello');
  await hello.waitFor({ timeout: 60_000 });
  // The engine's self-test matrix product, computed by candle inside the worker's wasm.
  assert.equal(await page.getByTestId('worker-self-test').textContent(), '[[19, 22], [43, 50]]');
  // Chromium validates relaxed SIMD: the page starts the relaxed-SIMD build.
  assert.equal(await page.getByTestId('worker-kernels').textContent(), 'wasm relaxed SIMD');
  assert.equal(await page.getByTestId('error').count(), 0);
  // The worker script and its wasm were fetched from our server, not from anywhere else.
  const paths = env.server.requests.map((r) => r.path);
  // (Its files carry the build's hash, written by scripts/pwa-build.)
  assert.ok(paths.some((p) => /^\/sprig-worker-relaxed-[0-9a-f]{16}_loader\.js$/.test(p)), paths.join(' '));
  assert.ok(paths.some((p) => /^\/sprig-worker-relaxed-[0-9a-f]{16}_bg\.wasm$/.test(p)), paths.join(' '));
  // The page started that build's loader (the service worker precaches both).
  assert.equal(workers.length, 1, workers.join(' '));
  assert.match(workers[0], /^\/sprig-worker-relaxed-[0-9a-f]{16}_loader\.js$/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('?kernels=simd128 starts the simd128 build, which gives the same self-test', async () => {
  const page = await env.browser.newPage();
  const errors = collectErrors(page);
  const workers = [];
  page.on('worker', (w) => workers.push(new URL(w.url()).pathname));
  await page.goto(env.server.url + '/?kernels=simd128');
  await page.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('worker-kernels').textContent(), 'wasm SIMD');
  assert.equal(await page.getByTestId('worker-self-test').textContent(), '[[19, 22], [43, 50]]');
  assert.equal(workers.length, 1, workers.join(' '));
  assert.match(workers[0], /^\/sprig-worker-[0-9a-f]{16}_loader\.js$/);
  assert.deepEqual(errors, []);
  await page.close();
});
