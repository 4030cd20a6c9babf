// Launches Debian's Chromium headless through playwright-core (never a
// downloaded browser), with the flags this closed network needs.

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const OPTIONS = {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
};

export async function launch() {
  return chromium.launch(OPTIONS);
}

/**
 * A browser with an on-disk profile in `dir`, as a user has. Contexts of
 * `launch()` are off the record: their origin storage lives in memory, which
 * gives reads of 0 bytes past a few GB of OPFS data.
 */
export async function launchPersistent(dir) {
  return chromium.launchPersistentContext(dir, OPTIONS);
}

/** Collects the page's console errors and uncaught exceptions, for assertions. */
export function collectErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  return errors;
}

/**
 * Registers node:test hooks that serve the built dist/ over HTTP and launch
 * Chromium for the tests of one file; returns live getters for both.
 */
export async function useDistAndBrowser() {
  const { before, after } = await import('node:test');
  const { fileURLToPath } = await import('node:url');
  const { startServer } = await import('../server.mjs');
  const dist = process.env.SPRIG_DIST ?? fileURLToPath(new URL('../../dist', import.meta.url));
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer({ root: dist });
    env.browser = await launch();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.close();
  });
  return env;
}
