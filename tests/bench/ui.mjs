// Benchmark (not a test): a fixed greedy generation through the real UI and
// worker in headless Chromium. Prints prefill and decode speeds per run, as the
// reply's own figures show them. Run by scripts/bench after `trunk build --release`.

import { fileURLToPath } from 'node:url';
import { startServer } from '../server.mjs';
import { launch } from '../e2e/browser.mjs';

const DIST = process.env.SPRIG_DIST ?? fileURLToPath(new URL('../../dist', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 3);
const QUESTION = 'Explain in a few sentences why the sky is blue.';

const server = await startServer({ root: DIST });
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(server.url + '/');
  const t0 = Date.now();
  await page.getByTestId('model-load').click();
  await page.getByTestId('model-ready').waitFor({ timeout: 300_000 });
  console.log(`ui: model loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s (download from loopback + load)`);
  await page.getByTestId('settings').click();
  for (const [id, v] of Object.entries({ temperature: 0, 'repeat-penalty': 1, 'max-tokens': 64 })) {
    await page.getByTestId(id).fill(String(v));
    await page.getByTestId(id).dispatchEvent('change');
  }
  const rows = [];
  for (let run = 1; run <= RUNS; run++) {
    await page.getByTestId('new-chat').click();
    await page.getByTestId('composer').fill(QUESTION);
    await page.getByTestId('composer').press('Enter');
    const stats = page.getByTestId('reply-stats').first();
    await stats.waitFor({ timeout: 300_000 });
    const text = await stats.textContent();
    const m = /^(\d+) tokens · ([\d.]+) tok\/s · prompt (\d+) tokens \((\d+) new, ([\d.]+) tok\/s\)/.exec(text);
    if (!m) throw new Error(`unexpected stats: ${text}`);
    const [, gen, decode, prompt, fresh, prefill] = m;
    rows.push({ decode: Number(decode), prefill: Number(prefill) });
    console.log(`ui run ${run}: prompt ${prompt} tokens (${fresh} run) at ${prefill} tok/s; ${gen} tokens at ${decode} tok/s`);
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`ui median: prefill ${median(rows.map((r) => r.prefill))} tok/s, decode ${median(rows.map((r) => r.decode))} tok/s`);
} finally {
  await browser.close();
  await server.close();
}
