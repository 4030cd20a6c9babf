// The app's page as the e2e tests drive it (a page object): loading a model,
// sending a message, waiting for a reply, opening the Models panel and filling
// Settings, through the data-testids the UI carries. The test files use these
// instead of writing the same steps again.

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
