// Benchmark (not a test): the model store in headless Chromium. For each model
// (the demo as one shard and as three, and a synthetic ~1 GB model in 256 MiB
// shards), in a fresh browser profile:
//   cold  — download from a loopback server into OPFS (4 parallel ranged
//           connections, SHA-256 of each shard) and load into the engine;
//   warm  — reload the page and load again, from the store, no network;
//   read  — the floor of a warm load: a worker that merely reads the same
//           stored bytes (synchronous OPFS handles, 1 MiB reads, as the
//           engine's reader);
//   fetch — the floor of a cold download: the page merely fetching the same
//           shards over one connection, bytes discarded.
// Prints seconds and ratios. Run by scripts/bench-store.

import { fileURLToPath } from 'node:url';
import { startServer } from '../server.mjs';
import { launch } from '../e2e/browser.mjs';

const DIST = process.env.SPRIG_DIST ?? fileURLToPath(new URL('../../dist', import.meta.url));
const BENCH_MODELS = process.env.SPRIG_BENCH_MODELS ?? fileURLToPath(new URL('../../models/bench', import.meta.url));

const app = await startServer({ root: DIST });
const models = await startServer({ root: BENCH_MODELS, cors: true });
const browser = await launch();

const MODELS = [
  ['demo, 1 shard', app.url + '/models/SmolLM2-135M-Instruct.Q4_1.manifest.json'],
  ['demo, 3 shards', app.url + '/models/split/SmolLM2-135M-Instruct.Q4_1.manifest.json'],
  ['synthetic 1 GB, 4 shards', models.url + '/synth-1g/synth-1g.manifest.json'],
];

async function load(page, url) {
  await page.getByTestId('model-select').selectOption('custom');
  await page.getByTestId('model-url').fill(url);
  const t0 = performance.now();
  await page.getByTestId('model-load').click();
  await page.getByTestId('model-ready').waitFor({ timeout: 900_000 });
  const wall = (performance.now() - t0) / 1000;
  return { wall, text: await page.getByTestId('model-ready').textContent() };
}

/** Reads every stored shard of every model in a worker; returns { bytes, seconds }. */
function readStore(page) {
  return page.evaluate(async () => {
    const src = `onmessage = async () => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('sprig-models');
      const buf = new Uint8Array(1 << 20);
      let bytes = 0;
      const t0 = performance.now();
      for await (const [, model] of root.entries()) {
        for await (const [name, h] of model.entries()) {
          if (!name.endsWith('.data')) continue;
          const f = await h.createSyncAccessHandle({ mode: 'read-only' });
          const size = f.getSize();
          for (let at = 0; at < size; at += buf.length) bytes += f.read(buf, { at });
          f.close();
        }
      }
      postMessage({ bytes, seconds: (performance.now() - t0) / 1000 });
    }`;
    const w = new Worker(URL.createObjectURL(new Blob([src])));
    return new Promise((ok, no) => { w.onmessage = (m) => { ok(m.data); w.terminate(); }; w.onerror = no; w.postMessage(0); });
  });
}

/** Fetches every shard of the manifest at `url` once, discarding the bytes; returns seconds. */
function fetchShards(page, url) {
  return page.evaluate(async (url) => {
    const manifest = await (await fetch(url, { cache: 'no-store' })).json();
    const t0 = performance.now();
    for (const s of manifest.shards) await (await fetch(new URL(s.url, url), { cache: 'no-store' })).arrayBuffer();
    return (performance.now() - t0) / 1000;
  }, url);
}

const figure = (text, re) => (re.exec(text) ?? [])[1] ?? '?';
const rows = [];
try {
  for (const [name, url] of MODELS) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(app.url + '/');
    const cold = await load(page, url);
    await page.reload();
    const warm = await load(page, url);
    const read = await readStore(page);
    const fetched = await fetchShards(page, url);
    await context.close();
    const gb = read.bytes / 1e9;
    rows.push({
      name, gb,
      cold: cold.wall, coldFetch: figure(cold.text, /downloaded in ([\d.]+) s/), coldLoad: figure(cold.text, /, loaded in ([\d.]+) s/),
      warm: warm.wall, read: read.seconds, fetch: fetched, memory: figure(warm.text, /worker memory ([\d.]+ \w+)/),
    });
    const r = rows.at(-1);
    console.log(
      `${name}: ${gb.toFixed(3)} GB · cold ${r.cold.toFixed(1)} s (download+verify ${r.coldFetch} s, load ${r.coldLoad} s) · bare fetch ${r.fetch.toFixed(2)} s` +
        ` · warm ${r.warm.toFixed(2)} s · store read ${r.read.toFixed(2)} s (${(gb / r.read).toFixed(2)} GB/s)` +
        ` · warm/read ${(r.warm / r.read).toFixed(1)}× · cold/read ${(r.cold / r.read).toFixed(1)}× · worker memory ${r.memory}`,
    );
  }
  console.log('\n| model | size | cold load (download + verify / engine) | bare fetch of the shards | warm load | bare read of the stored bytes | warm ÷ read | worker memory |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.gb.toFixed(2)} GB | ${r.cold.toFixed(1)} s (${r.coldFetch} / ${r.coldLoad}) | ${r.fetch.toFixed(2)} s | ${r.warm.toFixed(2)} s | ${r.read.toFixed(2)} s | ${(r.warm / r.read).toFixed(1)}× | ${r.memory} |`);
  }
} finally {
  await browser.close();
  await app.close();
  await models.close();
}
