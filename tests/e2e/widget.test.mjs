// The embeddable widget, end to end: a host page on another origin carries
// only the one <script src=".../embed.js"> tag (and a hostile stylesheet); the
// launcher opens Sprig's compact view in an iframe from Sprig's own origin,
// where the real worker loads the demo model and chats; Sprig.ask()
// round-trips over postMessage; data-model names the demo by its id in
// dist/models.json (one host page gives its URL instead, which that catalog
// allows; catalog.test.mjs covers one that does not); messages from anyone but the widget's parent
// at its parent's origin are ignored, and the widget posts only to that origin.
//
// Origins: Sprig is served from http://127.0.0.1:A (dist/), the host page from
// http://127.0.0.1:B (another origin, the same site), a foreign page from
// http://127.0.0.1:C. The last test serves the host page from http://localhost:B,
// another site: there the widget is a third-party frame, whose storage browsers
// partition by the embedding site, or block (as this Chromium does).

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectErrors, useDistAndBrowser } from './browser.mjs';
import { LOAD_TIMEOUT } from './app.mjs';
import { startServer } from '../server.mjs';

const MANIFEST = '/models/SmolLM2-135M-Instruct.Q4_1.manifest.json';
const env = await useDistAndBrowser();
const sites = { dir: null, host: null, foreign: null };

/** The host server's URL: Sprig's site, another port, so another origin. */
const hostUrl = () => sites.host.url;
/** The host server's URL on another site than Sprig's (localhost, not 127.0.0.1). */
const crossSiteHostUrl = () => sites.host.url.replace('127.0.0.1', 'localhost');

/** A host page: nothing of Sprig's but the one tag, and CSS that tries hard to break it. */
function hostHtml(attrs) {
  const tag = Object.entries(attrs).map(([k, v]) => ` ${k}="${v}"`).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>A shop</title>
<link rel="icon" href="data:,">
<style>
  /* A hostile stylesheet: none of it may reach the widget. */
  body > *:not(main) { display: none !important; }
  button, iframe, div, dialog, [role], sprig-widget {
    all: unset !important; display: none !important; position: static !important;
    width: 1px !important; height: 1px !important; background: rgb(255, 0, 0) !important;
    border: 9px solid rgb(255, 0, 0) !important;
  }
  *:not(html):not(body) {
    font-family: monospace !important; color: rgb(255, 0, 0) !important; opacity: 0.2 !important;
    visibility: hidden !important; pointer-events: none !important; z-index: -1 !important;
  }
</style>
</head>
<body>
<main><h1>A shop</h1><p>Things to buy.</p></main>
<iframe id="ad" title="An advertisement" src="${sites.foreign.url}/sibling.html"></iframe>
<script src="${env.server.url}/embed.js"${tag} async></script>
</body>
</html>
`;
}

/** The foreign origin's pages. */
const FOREIGN_PAGES = {
  // Framed by the host page: forges the widget's messages to it.
  'sibling.html': `<!doctype html><meta charset="utf-8"><title>An ad</title><link rel="icon" href="data:,">
<script>
  window.forge = () => {
    for (let id = 1; id <= 20; id++) parent.postMessage({ type: 'sprig:reply', id, text: 'FORGED' }, '*');
    parent.postMessage({ type: 'sprig:error', id: 1, message: 'FORGED' }, '*');
    parent.postMessage({ type: 'sprig:close' }, '*');
  };
</script>`,
  // Embeds Sprig's widget itself, claiming (?parent=) to be another origin, or not.
  'liar.html': () => `<!doctype html><meta charset="utf-8"><title>Not the host</title><link rel="icon" href="data:,">
<body><script>
  window.received = [];
  addEventListener('message', (e) => received.push({ origin: e.origin, data: e.data }));
  const parentOrigin = new URLSearchParams(location.search).get('parent');
  const frame = document.createElement('iframe');
  frame.src = '${env.server.url}/?embed=1&model=demo' +
    '&parent=' + encodeURIComponent(parentOrigin);
  document.body.append(frame);
  window.ask = (text) => frame.contentWindow.postMessage({ type: 'sprig:ask', id: 'liar', text }, '*');
</script>`,
  // Frames a host page (?host=) and tries to swap the Sprig frame inside it
  // for a page of its choosing: a page can navigate any frame below it that
  // it can reach.
  'ancestor.html': `<!doctype html><meta charset="utf-8"><title>Frames the shop</title><link rel="icon" href="data:,">
<body><script>
  const frame = document.createElement('iframe');
  frame.src = new URLSearchParams(location.search).get('host');
  frame.style.cssText = 'width: 900px; height: 700px';
  document.body.append(frame);
  window.swap = (url) => {
    const host = frames[0];
    for (let i = 0; i < host.length; i++) {
      try {
        void host[i].location.href; // the ad, of this origin
      } catch {
        host[i].location.href = url; // Sprig's frame: another origin, yet navigable from here
        return true;
      }
    }
    return false;
  };
</script>`,
};

before(async () => {
  sites.dir = await mkdtemp(join(tmpdir(), 'sprig-widget-'));
  await writeFile(join(sites.dir, 'blank.html'), '<!doctype html><meta charset="utf-8"><title>Blank</title><link rel="icon" href="data:,">');
  sites.host = await startServer({ root: sites.dir });
  sites.foreign = await startServer({ root: sites.dir });
  for (const [name, html] of Object.entries(FOREIGN_PAGES)) {
    await writeFile(join(sites.dir, name), typeof html === 'function' ? html() : html);
  }
  const common = { 'data-title': 'Shop helper', 'data-temperature': '0', 'data-max-tokens': '32' };
  // By its catalog id; the second page by its URL, which dist/models.json allows (allow_custom_urls).
  await writeFile(join(sites.dir, 'host.html'), hostHtml({ ...common, 'data-model': 'demo', 'data-theme': 'dark' }));
  const url = { 'data-model': env.server.url + MANIFEST, 'data-position': 'bottom-left', 'data-theme': 'light' };
  await writeFile(join(sites.dir, 'host-left.html'), hostHtml({ ...common, ...url }));
});

after(async () => {
  await sites.host?.close();
  await sites.foreign?.close();
  if (sites.dir) await rm(sites.dir, { recursive: true, force: true });
});

/** A fresh browser context (own storage) on a host page. */
async function hostPage(url = `${hostUrl()}/host.html`) {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(url);
  return { context, page, errors };
}

const launcher = (page) => page.locator('sprig-widget [data-sprig="launcher"]');
const panel = (page) => page.locator('sprig-widget .panel');
/** The widget's iframe, for locators. */
const widget = (page) => page.frameLocator('sprig-widget iframe');

/** The text of the assistant's messages in the widget, as shown. */
const shownReplies = (page) => widget(page).locator('[data-testid="message-assistant"] .md').allTextContents();
const shownQuestions = (page) => widget(page).getByTestId('message-user').allTextContents();
const squash = (s) => s.replace(/\s+/g, ' ').trim();

test('the launcher survives the host page\'s CSS and opens Sprig\'s compact chat, which loads the model and answers', async () => {
  const { context, page, errors } = await hostPage();
  const button = launcher(page);
  await button.waitFor({ timeout: 10_000 });
  // Untouched by the host's stylesheet: placed, sized and coloured as embed.js says.
  const viewport = page.viewportSize();
  const box = await button.boundingBox();
  assert.deepEqual([box.width, box.height], [56, 56]);
  assert.ok(Math.abs(box.x + box.width - (viewport.width - 20)) <= 1 && Math.abs(box.y + box.height - (viewport.height - 20)) <= 1, JSON.stringify(box));
  const style = await button.evaluate((el) => {
    const s = getComputedStyle(el);
    const h = getComputedStyle(el.getRootNode().host);
    return { bg: s.backgroundColor, color: s.color, font: s.fontFamily, opacity: h.opacity, visibility: s.visibility, events: s.pointerEvents, display: h.display };
  });
  assert.deepEqual(style, { bg: 'rgb(123, 196, 134)', color: 'rgb(16, 33, 15)', font: 'system-ui, sans-serif', opacity: '1', visibility: 'visible', events: 'auto', display: 'block' });
  // On top and clickable where it is drawn.
  const hit = await page.evaluate(([x, y]) => document.elementFromPoint(x, y)?.localName, [box.x + 28, box.y + 28]);
  assert.equal(hit, 'sprig-widget');
  assert.equal(await button.getAttribute('aria-expanded'), 'false');
  assert.equal(await page.locator('sprig-widget iframe').count(), 0, 'the iframe is only made on first open');
  // The page needs no special headers: nothing here is cross-origin isolated.
  assert.equal(await page.evaluate(() => crossOriginIsolated), false);

  await button.click();
  await panel(page).waitFor({ state: 'visible' });
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  const iframe = page.locator('sprig-widget iframe');
  const src = new URL(await iframe.getAttribute('src'));
  assert.equal(src.origin, env.server.url, 'the chat runs on Sprig\'s origin');
  assert.equal(src.searchParams.get('embed'), '1');
  assert.equal(src.searchParams.get('parent'), hostUrl());
  assert.equal(await iframe.getAttribute('title'), 'Shop helper');
  const frameBox = await iframe.boundingBox();
  assert.ok(frameBox.width >= 300 && frameBox.height >= 300, JSON.stringify(frameBox));

  // Sprig's compact view: the title, no sidebar, picker or settings; dark as asked.
  const chat = widget(page);
  assert.equal(await chat.getByTestId('embed-title').textContent(), 'Shop helper');
  assert.equal(await chat.locator('html').getAttribute('data-theme'), 'dark');
  for (const absent of ['.sidebar', '[data-testid="model-select"]', '[data-testid="settings"]', '[data-testid="models-panel"]']) {
    assert.equal(await chat.locator(absent).count(), 0, absent);
  }
  // The model configured by data-model downloads (with progress) and loads.
  await chat.getByTestId('model-progress').waitFor({ timeout: 30_000 });
  await chat.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
  assert.ok(env.server.requests.some((r) => r.path === MANIFEST), 'the worker fetched data-model from Sprig');

  await chat.getByTestId('composer').fill('What is the capital of France?');
  await chat.getByTestId('composer').press('Enter');
  await chat.getByTestId('reply-stats').first().waitFor({ timeout: 120_000 });
  assert.match(await chat.getByTestId('reply-stats').first().textContent(), /tokens · [\d.]+ tok\/s/);
  assert.deepEqual(await shownQuestions(page), ['What is the capital of France?']);
  const [reply] = await shownReplies(page);
  assert.ok(reply.trim().length > 0);

  // Closing hides it and keeps the conversation; the widget's own × and Escape close it too.
  await page.evaluate(() => Sprig.close());
  assert.ok(await panel(page).isHidden());
  assert.equal(await button.getAttribute('aria-expanded'), 'false');
  await page.evaluate(() => Sprig.open());
  await panel(page).waitFor({ state: 'visible' });
  assert.deepEqual(await shownQuestions(page), ['What is the capital of France?']);
  await chat.getByTestId('embed-close').click();
  await panel(page).waitFor({ state: 'hidden' });
  await button.click();
  await chat.getByTestId('composer').press('Escape');
  await panel(page).waitFor({ state: 'hidden' });
  assert.ok(await button.evaluate((el) => el.getRootNode().activeElement === el), 'focus returns to the launcher');
  assert.deepEqual(errors, []);
  await context.close();
});

test('Sprig.ask() round-trips: queued until the model is ready, answered with the reply shown in the widget', async () => {
  const { context, page, errors } = await hostPage();
  await page.waitForFunction(() => window.Sprig);
  await page.evaluate(() => {
    window.__events = [];
    for (const type of ['ready', 'reply', 'open']) Sprig.addEventListener(type, (e) => window.__events.push({ type, ...e.detail }));
  });
  await assert.rejects(page.evaluate(() => Sprig.ask('  ')), /non-empty string/);
  // Asked before the widget even exists: it opens, downloads the model, then answers.
  const reply = await page.evaluate(() => Sprig.ask('Say hi'));
  assert.equal(typeof reply, 'string');
  assert.ok(reply.trim().length > 0, JSON.stringify(reply));
  assert.ok(await panel(page).isVisible(), 'ask opens the chat');
  assert.deepEqual(await shownQuestions(page), ['Say hi']);
  assert.equal(squash((await shownReplies(page)).at(-1)), squash(reply));

  // Two at once: the second waits for the first reply, each gets its own.
  const [one, two] = await page.evaluate(() => Promise.all([Sprig.ask('Name a fruit.'), Sprig.ask('Name a colour.')]));
  assert.deepEqual(await shownQuestions(page), ['Say hi', 'Name a fruit.', 'Name a colour.']);
  assert.deepEqual((await shownReplies(page)).map(squash), [reply, one, two].map(squash));

  const events = await page.evaluate(() => window.__events);
  assert.deepEqual(events.map((e) => e.type), ['open', 'ready', 'reply', 'reply', 'reply']);
  assert.match(events[1].model, /smollm2/i);
  assert.deepEqual(events.slice(2).map((e) => [e.id, e.text]), [[1, reply], [2, one], [3, two]]);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the widget ignores messages from anyone but its parent at its origin, and speaks only to that origin', async () => {
  const { context, page, errors } = await hostPage();
  await page.waitForFunction(() => window.Sprig);
  await page.evaluate(() => {
    window.__replies = [];
    Sprig.addEventListener('reply', (e) => window.__replies.push(e.detail));
    Sprig.open();
  });
  await widget(page).getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });

  // 1. A frame of another origin on the host page forges the widget's replies,
  // an error and a close while an ask is running: embed.js ignores them all.
  const ad = page.frames().find((f) => f.url().startsWith(sites.foreign.url));
  assert.ok(ad, 'the foreign frame is on the page');
  await page.evaluate(() => { window.__asked = Sprig.ask('Name a colour.').then((t) => t, (e) => `REJECTED ${e.message}`); });
  for (let i = 0; i < 5; i++) {
    await ad.evaluate(() => window.forge());
    await page.waitForTimeout(50);
  }
  const answer = await page.evaluate(() => window.__asked);
  assert.ok(!/FORGED|REJECTED/.test(answer), answer);
  assert.equal(squash((await shownReplies(page)).at(-1)), squash(answer));
  assert.ok(await panel(page).isVisible(), 'a forged close was ignored');

  // 2. A window of the host's own origin that is not the widget's parent (a
  // popup reaching the iframe through its opener): the widget ignores it.
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.evaluate(() => { window.open('/blank.html'); })]);
  await popup.waitForLoadState();
  await popup.evaluate(() => {
    const frame = opener.document.querySelector('sprig-widget').shadowRoot.querySelector('iframe');
    frame.contentWindow.postMessage({ type: 'sprig:ask', id: 'popup', text: 'FROM THE POPUP' }, '*');
  });
  await popup.close();

  // 3. A page of another origin that embeds the widget itself and claims to be
  // the host (?parent=): it is the real parent, at the wrong origin. Nothing it
  // posts is taken, and nothing the widget posts reaches it.
  const liar = await context.newPage();
  const liarErrors = collectErrors(liar);
  await liar.goto(`${sites.foreign.url}/liar.html?parent=${encodeURIComponent(hostUrl())}`);
  const liarChat = liar.frameLocator('iframe');
  await liarChat.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
  for (let i = 0; i < 10; i++) {
    await liar.evaluate(() => window.ask('FROM A FOREIGN PARENT'));
    await liar.waitForTimeout(150);
  }
  assert.equal(await liarChat.getByTestId('message-user').count(), 0);
  assert.deepEqual(await liar.evaluate(() => window.received), [], 'no sprig:hello / sprig:ready went to the wrong origin');

  // The control: the same page, honest about its origin, is heard and answered.
  await liar.goto(`${sites.foreign.url}/liar.html?parent=${encodeURIComponent(sites.foreign.url)}`);
  await liar.waitForFunction(() => window.received.some((m) => m.data?.type === 'sprig:ready'), null, { timeout: LOAD_TIMEOUT });
  await liar.evaluate(() => window.ask('FROM AN HONEST PARENT'));
  await liar.waitForFunction(() => window.received.some((m) => m.data?.type === 'sprig:reply'), null, { timeout: 120_000 });
  const received = await liar.evaluate(() => window.received);
  assert.ok(received.every((m) => m.origin === env.server.url));
  assert.deepEqual(received.map((m) => m.data.type), ['sprig:hello', 'sprig:ready', 'sprig:reply']);
  assert.equal(received[2].data.id, 'liar');
  assert.deepEqual(await liarChat.getByTestId('message-user').allTextContents(), ['FROM AN HONEST PARENT']);

  // Back on the host: the popup's ask never ran, and no reply was posted for it.
  assert.deepEqual(await shownQuestions(page), ['Name a colour.']);
  assert.deepEqual((await page.evaluate(() => window.__replies)).map((r) => r.id), [1]);
  assert.deepEqual([...errors, ...liarErrors], []);
  await context.close();
});

test('a page framing the host page cannot reach the widget\'s frame; a page put in its place anyway is replaced, and asks go to a fresh widget', async () => {
  const context = await env.browser.newContext();
  const top = await context.newPage();
  const errors = collectErrors(top);
  const loaded = [];
  top.on('framenavigated', (f) => loaded.push(f.url()));
  await top.goto(`${sites.foreign.url}/ancestor.html?host=${encodeURIComponent(`${hostUrl()}/host.html`)}`);
  let host;
  for (let i = 0; i < 100 && !host; i++) {
    host = top.frames().find((f) => f.url().startsWith(hostUrl()));
    if (!host) await top.waitForTimeout(100);
  }
  assert.ok(host, 'the host page is framed');
  await host.waitForFunction(() => window.Sprig);
  await host.evaluate(() => {
    window.__events = [];
    for (const type of ['ready', 'reply', 'error']) Sprig.addEventListener(type, (e) => window.__events.push({ type, ...e.detail }));
  });
  const first = await host.evaluate(() => Sprig.ask('Say hi'));
  assert.ok(first.trim().length > 0);
  const src = await host.locator('sprig-widget iframe').getAttribute('src');
  const nonce = new URL(src).searchParams.get('nonce');
  assert.match(nonce, /^[0-9a-f]{32}$/);

  // The widget view set up the top page's way: the same model and parent, so
  // only the nonce (which the top page cannot read) tells it apart.
  const forged = `${env.server.url}/?embed=1&title=Forged&parent=${encodeURIComponent(hostUrl())}` +
    '&model=demo&nonce=forged';
  // The top page cannot even reach Sprig's frame: in embed.js's shadow root,
  // it is not among the host page's frames (only the ad is).
  assert.equal(await top.evaluate((url) => window.swap(url), forged), false);
  assert.equal(await top.evaluate(() => frames[0].length), 1);
  // Were it reached (by a browser that lists it, or another way in), the
  // frame would show the forged page: navigate it there.
  const sprigFrame = top.frames().find((f) => f.url().includes(`nonce=${nonce}`));
  await sprigFrame.evaluate((url) => { location.href = url; }, forged);
  await host.waitForFunction(() => window.__events.some((e) => e.type === 'error'), null, { timeout: 30_000 });
  assert.ok(loaded.some((url) => url.includes('nonce=forged')), 'the forged page loaded in the frame');

  // embed.js replaced it with a fresh frame of its own address; the forged page is gone.
  assert.equal(await host.locator('sprig-widget iframe').count(), 1);
  assert.equal(await host.locator('sprig-widget iframe').getAttribute('src'), src);
  assert.ok(!top.frames().some((f) => f.url().includes('nonce=forged')));
  // The next ask is answered there, by the model of data-model.
  const second = await host.evaluate(() => Sprig.ask('Name a fruit.'));
  assert.ok(second.trim().length > 0);
  const chat = host.frameLocator('sprig-widget iframe');
  assert.deepEqual(await chat.getByTestId('message-user').allTextContents(), ['Name a fruit.']);
  assert.equal(await chat.getByTestId('embed-title').textContent(), 'Shop helper');
  const events = await host.evaluate(() => window.__events);
  assert.deepEqual(events.map((e) => e.type), ['ready', 'reply', 'error', 'ready', 'reply']);
  assert.match(events[2].message, /replaced by another page; Sprig opened it again/);
  assert.deepEqual(events.map((e) => e.text).filter(Boolean), [first, second]);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the widget downloads into the model store the full app uses; its chats stay out of the app\'s history', async () => {
  const model = env.server.url + MANIFEST;
  const ggufBytes = () => env.server.bytesServed(/\.gguf$/);
  const { context, page, errors } = await hostPage(`${hostUrl()}/host-left.html`);
  await page.waitForFunction(() => window.Sprig);
  const box = await launcher(page).boundingBox();
  assert.ok(Math.abs(box.x - 20) <= 1, `data-position="bottom-left": ${JSON.stringify(box)}`);
  assert.ok((await page.evaluate(() => Sprig.ask('Say hi'))).length > 0);
  assert.equal(await widget(page).locator('html').getAttribute('data-theme'), 'light');

  // The full app finds the model stored: loading it downloads nothing.
  const app = await context.newPage();
  await app.goto(env.server.url + '/');
  await app.getByTestId('worker-hello').waitFor({ timeout: 60_000 });
  await app.getByTestId('models-panel').locator('summary').click();
  const row = app.locator(`[data-testid="stored-model"][data-url="${model}"]`);
  await app.waitForFunction((url) => document.querySelector(`[data-testid="stored-model"][data-url="${url}"]`)?.dataset.state === 'ready', model, { timeout: 10_000 });
  const before = ggufBytes();
  await row.getByTestId('models-load').click();
  await app.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
  assert.equal(ggufBytes(), before, 'no model bytes fetched again');
  // The widget's conversation is not in the app's history.
  assert.equal(await app.getByTestId('history-item').count(), 0);
  assert.equal(await app.getByTestId('message-user').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('on another site\'s page, where third-party storage is blocked, the widget says so and opens in a tab of its own', async (t) => {
  const { context, page } = await hostPage(`${crossSiteHostUrl()}/host.html`);
  await page.waitForFunction(() => window.Sprig);
  const sprigFrame = () => page.frames().find((f) => f.url().startsWith(env.server.url));
  await page.evaluate(() => Sprig.open());
  const chat = widget(page);
  await chat.getByTestId('embed-title').waitFor();
  const storage = await sprigFrame().evaluate(() => navigator.storage.getDirectory().then(() => 'partitioned', () => 'blocked'));
  t.diagnostic(`third-party storage here: ${storage}`);
  if (storage === 'partitioned') {
    // A browser that partitions: the widget works, with a store of its own for this site.
    await chat.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
    assert.ok((await page.evaluate(() => Sprig.ask('Say hi'))).length > 0);
    await context.close();
    return;
  }
  await chat.getByTestId('storage-blocked').waitFor({ timeout: 10_000 });
  await assert.rejects(page.evaluate(() => Sprig.ask('Say hi')), /third-party storage is blocked/);
  // The link opens the same chat as a top-level page of Sprig: first-party storage, no bridge.
  const [tab] = await Promise.all([context.waitForEvent('page'), chat.getByTestId('open-in-tab').click()]);
  await tab.waitForLoadState();
  const url = new URL(tab.url());
  assert.equal(url.origin, env.server.url);
  assert.equal(url.searchParams.get('parent'), null);
  assert.equal(url.searchParams.get('model'), 'demo', 'the catalog id of data-model');
  // A top-level widget view downloads only after a click.
  await tab.getByTestId('model-consent-load').click();
  await tab.getByTestId('model-ready').waitFor({ timeout: LOAD_TIMEOUT });
  assert.equal(await tab.getByTestId('embed-close').count(), 0, 'no parent to close into');
  await tab.getByTestId('composer').fill('Say hi');
  await tab.getByTestId('composer').press('Enter');
  await tab.getByTestId('reply-stats').first().waitFor({ timeout: 120_000 });
  await context.close();
});
