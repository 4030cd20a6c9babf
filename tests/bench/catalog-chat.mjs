// Benchmark step (not a test), run by scripts/bench-convert: a deployment
// whose catalog (models.json, written by `sprig publish`) lists the converted
// model, served over HTTP; headless Chromium with an on-disk profile opens
// the app, picks the model by its catalog entry, loads it (download into
// OPFS, then the workers the entry's defaults name), asks one question and
// prints the time of each step.
//
// Usage: node tests/bench/catalog-chat.mjs SITE_DIR MODEL_ID
//   SITE_DIR  a built dist/ with models.json and the model's files under it
//   MODEL_ID  the catalog id to pick

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../server.mjs';
import { launchPersistent } from '../e2e/browser.mjs';

const [site, id] = process.argv.slice(2);
if (!site || !id) {
  console.error('usage: node tests/bench/catalog-chat.mjs SITE_DIR MODEL_ID');
  process.exit(2);
}
const QUESTION = 'Why is the sky blue?';
const LOAD_TIMEOUT = 3_600_000;

const server = await startServer({ root: site });
const profile = await mkdtemp(join(tmpdir(), 'sprig-bench-catalog-'));
const context = await launchPersistent(profile);
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
try {
  const page = await context.newPage();
  let t = performance.now();
  await page.goto(server.url + '/');
  await page.locator(`[data-testid="model-select"] option[value="${id}"]`).waitFor({ state: 'attached', timeout: 60_000 });
  console.log(`app open, catalog read, "${id}" listed: ${seconds(performance.now() - t)}`);
  await page.getByTestId('settings').click();
  for (const [field, v] of Object.entries({ temperature: 0, 'repeat-penalty': 1, 'max-tokens': 32 })) {
    await page.getByTestId(field).fill(String(v));
    await page.getByTestId(field).dispatchEvent('change');
  }
  await page.getByTestId('model-select').selectOption(id);
  t = performance.now();
  await page.getByTestId('model-load').click();
  await page.getByTestId('model-ready').or(page.getByTestId('model-failed')).waitFor({ timeout: LOAD_TIMEOUT });
  if (await page.getByTestId('model-failed').count()) throw new Error(await page.getByTestId('model-failed').textContent());
  console.log(`download and load: ${seconds(performance.now() - t)}: ${(await page.getByTestId('model-ready').textContent()).trim()}`);
  await page.getByTestId('composer').fill(QUESTION);
  t = performance.now();
  await page.getByTestId('composer').press('Enter');
  const stats = page.getByTestId('reply-stats').first();
  await stats.waitFor({ timeout: LOAD_TIMEOUT });
  const reply = (await page.getByTestId('message-assistant').first().locator('.md').textContent()) ?? '';
  console.log(`reply: ${seconds(performance.now() - t)}: ${(await stats.textContent()).trim()}`);
  console.log(`  ${JSON.stringify(reply.slice(0, 160))}`);
} finally {
  await context.close();
  await server.close();
  await rm(profile, { recursive: true, force: true });
}
