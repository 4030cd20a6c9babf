// The app's page as the e2e tests drive it (a page object): loading a model,
// sending a message, waiting for a reply, opening the Models panel and filling
// Settings, through the data-testids the UI carries. The test files use these
// instead of writing the same steps again.

import assert from 'node:assert/strict';
import { collectErrors } from './browser.mjs';

/** How long a model may take to download and load in a test. */
export const LOAD_TIMEOUT = 180_000;
/** How long a reply may take. */
export const REPLY_TIMEOUT = 120_000;

/** Opens Settings and sets each field of `values` (test id -> value), as a user typing it. */
export async function setSettings(page, values) {
  await page.getByTestId('settings').click();
  for (const [id, value] of Object.entries(values)) {
    await page.getByTestId(id).fill(String(value));
    await page.getByTestId(id).dispatchEvent('change');
  }
}

/** Opens the Models panel (if it is closed). */
export async function openModels(page) {
  const panel = page.getByTestId('models-panel');
  if (!(await panel.evaluate((d) => d.open))) await panel.locator('summary').click();
}

/** Picks the demo model and clicks Load (without waiting for it). */
export async function startDemo(page) {
  await page.getByTestId('model-select').selectOption('demo');
  await page.getByTestId('model-load').click();
}

/** Types `url` as a custom model and clicks Load (without waiting for it). */
export async function startUrl(page, url) {
  await page.getByTestId('model-select').selectOption('custom');
  await page.getByTestId('model-url').fill(url);
  await page.getByTestId('model-load').click();
}

/** Waits until a model is ready. */
export async function waitReady(page, timeout = LOAD_TIMEOUT) {
  await page.getByTestId('model-ready').waitFor({ timeout });
}

/** Types `text` in the composer and sends it. */
export async function send(page, text) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
}

/** Waits until the `n`th reply (from 1) has ended; returns its stats line. */
export async function waitReply(page, n = 1, timeout = REPLY_TIMEOUT) {
  await page.getByTestId('reply-stats').nth(n - 1).waitFor({ timeout });
  return page.getByTestId('reply-stats').nth(n - 1).textContent();
}

/** The text of the `n`th reply (from 1), as shown. */
export function replyText(page, n = 1) {
  return page.locator('[data-testid="message-assistant"] .md').nth(n - 1).textContent();
}

/** Sends `text` as the `n`th message and returns the `n`th reply's text once it has ended. */
export async function ask(page, n, text, timeout = REPLY_TIMEOUT) {
  await send(page, text);
  await waitReply(page, n, timeout);
  return replyText(page, n);
}

/** A fresh browser context (its own storage) of `browser`, and a page on the app at `url`, collecting its errors. */
export async function freshPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(url + '/');
  return { context, page, errors };
}

/** The greedy 8-token reply to a fixed question. */
export async function greedyAnswer(page) {
  await setSettings(page, { temperature: 0, 'max-tokens': 8 });
  return ask(page, 1, 'What is the capital of France?');
}

/**
 * The greedy reply after a clean load of the demo (its one-shard manifest)
 * in a page `open()` gives, computed once: what every faulty or hosted
 * download must answer too.
 */
export function cleanReply(open) {
  let reply;
  return async () => {
    if (reply === undefined) {
      const { context, page } = await open();
      await page.getByTestId('model-load').click();
      await waitReady(page);
      reply = await greedyAnswer(page);
      assert.ok(reply.length > 0);
      await context.close();
    }
    return reply;
  };
}

/** The download's progress in percent, from the progress bar (0 when absent). */
export async function percent(page) {
  const v = await page.getByTestId('model-progress').getAttribute('aria-valuenow', { timeout: 1000 }).catch(() => null);
  return Number(v ?? 0);
}

/** Waits (up to 60 s) until the download's progress reaches `p` %. */
export async function waitPercent(page, p) {
  for (let i = 0; i < 600 && (await percent(page)) < p; i++) await page.waitForTimeout(100);
}
