// A model split across K workers, each with its own wasm memory, exchanging
// partial sums over MessageChannels: the same greedy replies as one worker.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectErrors, useDistAndBrowser } from './browser.mjs';
import { ask as askNth, setSettings, startDemo } from './app.mjs';

const env = await useDistAndBrowser();

/** A fresh page with `workers` set before the demo model loads. */
async function pageWith(workers) {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(env.server.url + '/');
  await setSettings(page, { workers, temperature: 0, 'max-tokens': 32, 'repeat-penalty': 1 });
  await startDemo(page);
  return { context, page, errors };
}

/** A split model's reply may take longer. */
const ask = (page, n, text) => askNth(page, n, text, 180_000);

/** Two turns (the second reusing the first's cache) and the ready line. */
async function conversation(workers) {
  const { context, page, errors } = await pageWith(workers);
  await page.getByTestId('model-ready').waitFor({ timeout: 180_000 });
  const ready = await page.getByTestId('model-ready').textContent();
  const replies = [await ask(page, 1, 'What is the capital of France?'), await ask(page, 2, 'Name three rivers of Europe.')];
  await context.close();
  return { ready, replies, errors };
}

test('two and three workers give the same greedy replies as one, with the same context', async () => {
  const one = await conversation(1);
  assert.ok(one.replies.every((r) => r.length > 10), JSON.stringify(one.replies));
  assert.doesNotMatch(one.ready, /workers/);
  assert.match(one.ready, / 8192 tokens of context /, one.ready);
  for (const k of [2, 3]) {
    const split = await conversation(k);
    assert.match(split.ready, new RegExp(`${k} workers, memory [\\d.]+ [MG]iB( \\+ [\\d.]+ [MG]iB){${k - 1}}`), split.ready);
    // Every worker's memory leaves room for the whole context (a peer's
    // count once reached rank 0 wrapped to 256 on wasm32).
    assert.match(split.ready, / 8192 tokens of context /, `${k} workers: ${split.ready}`);
    assert.deepEqual(split.replies, one.replies, `${k} workers`);
    assert.deepEqual(split.errors, []);
  }
});

test('a split the model cannot take is a clear error, and one worker still works after it', async () => {
  const { context, page } = await pageWith(4);
  await page.getByTestId('model-failed').waitFor({ timeout: 120_000 });
  assert.match(await page.getByTestId('model-failed').textContent(), /4 workers for a model whose layers split into 3 parts/);
  await page.getByTestId('workers').fill('1');
  await page.getByTestId('workers').dispatchEvent('change');
  await page.getByTestId('model-load').click();
  await page.getByTestId('model-ready').waitFor({ timeout: 180_000 });
  assert.ok((await ask(page, 1, 'Hello!')).length > 0);
  await context.close();
});

test('Stop ends a split model reply within a token, and the workers stay in step', async () => {
  const { context, page, errors } = await pageWith(2);
  await page.getByTestId('max-tokens').fill('400');
  await page.getByTestId('max-tokens').dispatchEvent('change');
  await page.getByTestId('model-ready').waitFor({ timeout: 180_000 });
  await page.getByTestId('composer').fill('Write a long story about a dragon.');
  await page.getByTestId('composer').press('Enter');
  await page.waitForFunction(() => (document.querySelector('[data-testid="message-assistant"] .md')?.textContent ?? '').length > 20, null, { timeout: 60_000 });
  const atStop = await page.evaluate(() => {
    document.querySelector('[data-testid="stop"]').click();
    return Number(document.querySelector('[data-testid="message-assistant"]').dataset.liveTokens);
  });
  await page.getByTestId('reply-stats').first().waitFor({ timeout: 60_000 });
  const stats = await page.getByTestId('reply-stats').first().textContent();
  assert.match(stats, /stopped/);
  const generated = Number(/^(\d+) tokens/.exec(stats)[1]);
  assert.ok(atStop > 0 && generated <= atStop + 2, `stopped within a token: ${atStop} at Stop, ${stats}`);
  // The next turn reuses the cache on every worker (cut back to what the
  // coordinator kept): an exchange out of step would end it in an error.
  await page.getByTestId('max-tokens').fill('24');
  await page.getByTestId('max-tokens').dispatchEvent('change');
  const split = await ask(page, 2, 'Name three rivers of Europe.');
  const history = await page.locator('[data-testid="message-assistant"] .md').first().textContent();
  assert.deepEqual(errors, []);
  await context.close();
  assert.ok(split.length > 10 && history.length > 20, JSON.stringify({ split, history }));
});
