/*!
 * Sprig's chat widget, with one tag on any page:
 *
 *   <script src="https://SPRIG/embed.js" data-model="demo" data-title="Help"
 *           data-position="bottom-right" data-theme="auto" async></script>
 *
 * Adds a launcher button; the chat opens in an iframe served from Sprig's own
 * origin (the app's widget view, /?embed=1), so the page's CSS and scripts
 * cannot reach into it and the model store is Sprig's. The launcher lives in a
 * shadow root, so the page's CSS cannot restyle it either.
 *
 * Options (data attributes): data-model (the id of a model in Sprig's
 * models.json; or, only where that catalog allows custom URLs, a manifest or
 * GGUF URL, relative to Sprig, with a '/' or ':' in it), data-title, data-position (bottom-right | bottom-left), data-theme
 * (auto | light | dark), data-system (system prompt), data-max-tokens,
 * data-temperature.
 *
 * API (window.Sprig, an EventTarget): Sprig.open(), Sprig.close(),
 * Sprig.toggle(), Sprig.ask(text, { open = true, timeout = 300000 }) -> Promise
 * of the reply's text (timeout in ms, counted once the model is ready; 0 for
 * none); events "ready" (detail.model), "reply" (detail.id, .text),
 * "error" (detail.message), "open", "close".
 *
 * Messages go to the iframe with targetOrigin = Sprig's origin, and are taken
 * from it only when they come from that iframe's window and Sprig's origin
 * and carry the random nonce this script put in the iframe's address; a
 * "ready" counts only for the model of data-model. The frame only ever shows
 * the page this script opened in it (its links open new tabs): when anything
 * else loads there (a page above this one can navigate any frame below it),
 * the asks sent to it fail, an "error" event says so, and a fresh frame takes
 * its place, up to 3 times per page. The script must run from
 * its own <script> tag (document.currentScript): otherwise it adds nothing.
 * The host's asks join the chat's one conversation, which the model reads
 * whole: a host can have it repeat what the user wrote in the chat.
 */
(() => {
  'use strict';
  if (window.Sprig) {
    console.warn('Sprig: embed.js is already on this page');
    return;
  }
  // Only this script's own tag says where Sprig is and which model to load:
  // guessing (the first …/embed.js on the page) could pick another site's.
  const script = document.currentScript;
  if (!script || !script.src) {
    console.error('Sprig: embed.js must be loaded by its own <script src> tag (document.currentScript is not set); nothing was added');
    return;
  }
  const src = new URL(script.src, location.href);
  const SPRIG = src.origin; // the only origin the iframe may speak from
  const APP = new URL('./', src); // the app, beside embed.js
  const data = (name) => (script.getAttribute(`data-${name}`) ?? '').trim();
  const oneOf = (value, allowed) => (allowed.includes(value) ? value : allowed[0]);

  // A catalog id as it is (the widget looks it up in Sprig's models.json);
  // anything else is a URL, made absolute against Sprig.
  const CATALOG_ID = /^[a-z0-9._-]{1,64}$/;
  let model = '';
  try {
    model = CATALOG_ID.test(data('model')) ? data('model') : data('model') && new URL(data('model'), APP).href;
  } catch {
    console.error(`Sprig: data-model is neither a catalog id nor a URL: ${data('model')}`);
  }
  const title = data('title') || 'Chat';
  const position = oneOf(data('position'), ['bottom-right', 'bottom-left']);
  const theme = oneOf(data('theme'), ['auto', 'light', 'dark']);
  const parent = location.origin; // "null" for file: pages and sandboxed frames: no bridge then

  // Echoed by the widget in every message: a page framing the widget itself
  // cannot know it.
  const nonce = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
  const query = new URLSearchParams({ embed: '1', title, theme, parent, nonce });
  if (model) query.set('model', model);
  for (const [attr, key] of [['system', 'system'], ['max-tokens', 'max_tokens'], ['temperature', 'temperature']]) {
    if (data(attr)) query.set(key, data(attr));
  }
  const frameUrl = `${APP.href}?${query}`;

  // The launcher and the panel, in a shadow root: the page's selectors cannot
  // match them, and :host's !important declarations win over the page's.
  // (Open, not closed: a closed root would hide nothing from the page's own
  // scripts, which run in the same window anyway, and tests can reach it.)
  const host = document.createElement('sprig-widget');
  const root = host.attachShadow({ mode: 'open' });
  const side = position === 'bottom-left' ? 'left' : 'right';
  root.innerHTML = `<style>
    :host { all: initial !important; display: block !important; position: fixed !important; ${side}: 0 !important;
      bottom: 0 !important; width: 0 !important; height: 0 !important; z-index: 2147483000 !important;
      visibility: visible !important; opacity: 1 !important; transform: none !important; }
    .launcher { position: fixed; ${side}: 20px; bottom: 20px; width: 56px; height: 56px; margin: 0; padding: 0;
      border: none; border-radius: 50%; cursor: pointer; display: flex; align-items: center; justify-content: center;
      background: #2f7d3b; color: #fff; box-shadow: 0 4px 14px rgba(0, 0, 0, 0.28); font: 16px/1 system-ui, sans-serif; }
    .launcher:focus-visible { outline: 3px solid #7bc486; outline-offset: 3px; }
    .launcher svg { width: 28px; height: 28px; fill: none; stroke: currentColor; stroke-width: 2;
      stroke-linecap: round; stroke-linejoin: round; }
    .launcher .close, .launcher[aria-expanded="true"] .chat { display: none; }
    .launcher[aria-expanded="true"] .close { display: block; }
    .panel { position: fixed; ${side}: 20px; bottom: 88px; width: min(400px, calc(100vw - 40px));
      height: min(640px, calc(100vh - 108px)); border-radius: 12px; overflow: hidden; background: #fbfbf8;
      box-shadow: 0 10px 40px rgba(0, 0, 0, 0.3); }
    .panel[hidden] { display: none; }
    iframe { display: block; width: 100%; height: 100%; border: 0; margin: 0; padding: 0; }
    .dark .launcher { background: #7bc486; color: #10210f; }
    .dark .panel { background: #151714; }
    @media (prefers-color-scheme: dark) {
      .auto .launcher { background: #7bc486; color: #10210f; }
      .auto .panel { background: #151714; }
    }
    @media (max-width: 480px) {
      .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; }
      .launcher[aria-expanded="true"] { display: none; }
    }
  </style>
  <div class="${theme}">
    <div class="panel" id="panel" role="dialog" aria-label="" hidden></div>
    <button class="launcher" type="button" aria-controls="panel" aria-expanded="false" data-sprig="launcher">
      <svg class="chat" viewBox="0 0 24 24" aria-hidden="true"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.4-5A8 8 0 1 1 21 12z"/></svg>
      <svg class="close" viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>
    </button>
  </div>`;
  const panel = root.getElementById('panel');
  const launcher = root.querySelector('.launcher');
  panel.setAttribute('aria-label', title);
  launcher.setAttribute('aria-label', `Open the chat: ${title}`);

  let frame = null;
  let loads = 0; // load events of this frame
  let replaced = 0; // frames replaced after something else loaded in them
  const MAX_REPLACED = 3;
  let connected = false; // the app's bridge listens (sprig:hello)
  let ready = false; // the model is loaded (sprig:ready)
  let lastId = 0;
  const asks = new Map(); // id -> { text, resolve, reject, timeout, timer, sent }

  const Sprig = new EventTarget();
  const emit = (type, detail) => Sprig.dispatchEvent(new CustomEvent(type, { detail }));

  function ensureFrame() {
    if (frame) return;
    frame = document.createElement('iframe');
    frame.title = title;
    frame.src = frameUrl;
    frame.allow = 'clipboard-write; cross-origin-isolated';
    // Sprig's page runs scripts and keeps its origin (for its model store), but
    // cannot navigate the embedding page.
    frame.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox');
    frame.setAttribute('data-sprig', 'frame');
    loads = 0;
    frame.addEventListener('load', onFrameLoad);
    panel.append(frame);
  }

  /**
   * The frame's first load is the page this script opened; any later one is
   * another page (the app never navigates its frame), which cannot know the
   * nonce, so its messages are ignored. What was sent to the first page is
   * lost with it; a fresh frame replaces this one.
   */
  function onFrameLoad(event) {
    if (event.currentTarget !== frame || ++loads === 1) return;
    const hadFocus = root.activeElement === frame;
    frame.remove();
    frame = null;
    connected = false;
    ready = false;
    for (const [id, ask] of asks) if (ask.sent) settle(id, "the chat's page was replaced by another page");
    if (++replaced > MAX_REPLACED) {
      for (const id of [...asks.keys()]) settle(id, "the chat's page keeps being replaced by another page");
      emit('error', { id: null, message: "the chat's page keeps being replaced by another page; it stays closed" });
      close();
      return;
    }
    emit('error', { id: null, message: "the chat's page was replaced by another page; Sprig opened it again" });
    ensureFrame();
    if (hadFocus) frame.focus();
  }

  function isOpen() {
    return !panel.hidden;
  }

  function open() {
    ensureFrame();
    if (isOpen()) return;
    panel.hidden = false;
    launcher.setAttribute('aria-expanded', 'true');
    launcher.setAttribute('aria-label', `Close the chat: ${title}`);
    frame.focus();
    emit('open');
  }

  function close() {
    if (!isOpen()) return;
    const hadFocus = root.activeElement === frame;
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
    launcher.setAttribute('aria-label', `Open the chat: ${title}`);
    if (hadFocus) launcher.focus();
    emit('close');
  }

  function settle(id, error, text) {
    const ask = asks.get(id);
    if (!ask) return;
    asks.delete(id);
    clearTimeout(ask.timer);
    if (error) ask.reject(new Error(`Sprig: ${error}`));
    else ask.resolve(text);
  }

  /** Sends what waits, once the bridge listens; starts timeouts once the model is ready. */
  function flush() {
    for (const [id, ask] of asks) {
      if (connected && !ask.sent) {
        frame.contentWindow.postMessage({ type: 'sprig:ask', id, text: ask.text }, SPRIG);
        ask.sent = true;
      }
      if (ready && ask.timeout > 0 && ask.timer == null) {
        ask.timer = setTimeout(() => settle(id, `no reply within ${ask.timeout} ms`), ask.timeout);
      }
    }
  }

  window.addEventListener('message', (event) => {
    if (!frame || event.source !== frame.contentWindow || event.origin !== SPRIG) return;
    const m = event.data;
    if (!m || typeof m !== 'object' || typeof m.type !== 'string' || m.nonce !== nonce) return;
    switch (m.type) {
      case 'sprig:hello':
        if (connected) {
          // The widget's page started again: what it was answering is lost.
          for (const [id, ask] of asks) if (ask.sent) settle(id, 'the chat was reloaded');
        }
        connected = true;
        ready = false;
        flush();
        break;
      case 'sprig:ready':
        if (m.url !== model) {
          console.error(`Sprig: the chat loaded ${m.url}, not the data-model ${model}`);
          return;
        }
        ready = true;
        flush();
        emit('ready', { model: String(m.model ?? '') });
        break;
      case 'sprig:reply':
        if (typeof m.text !== 'string') return;
        settle(m.id, null, m.text);
        emit('reply', { id: m.id, text: m.text });
        break;
      case 'sprig:error': {
        const message = String(m.message ?? 'unknown error');
        if (m.id != null) settle(m.id, message);
        emit('error', { id: m.id ?? null, message });
        break;
      }
      case 'sprig:close':
        close();
        break;
      default:
    }
  });

  launcher.addEventListener('click', () => (isOpen() ? close() : open()));

  Object.assign(Sprig, {
    /** Opens the chat (loading the widget the first time). */
    open,
    /** Hides the chat; the conversation and the loaded model stay. */
    close,
    /** Opens or hides the chat. */
    toggle: () => (isOpen() ? close() : open()),
    /**
     * Sends `text` as the user's message; resolves with the whole reply's text.
     * Rejects on an error, or after `timeout` ms (counted once the model is ready).
     */
    ask(text, { open: show = true, timeout = 300_000 } = {}) {
      if (typeof text !== 'string' || !text.trim()) {
        return Promise.reject(new TypeError('Sprig.ask: text must be a non-empty string'));
      }
      if (parent === 'null') {
        return Promise.reject(new Error('Sprig: this page has no origin (file: or sandboxed), so it cannot talk to the chat'));
      }
      return new Promise((resolve, reject) => {
        const id = ++lastId;
        asks.set(id, { text, resolve, reject, timeout: Number(timeout) || 0, timer: null, sent: false });
        ensureFrame();
        if (show) open();
        flush();
      });
    },
  });
  window.Sprig = Sprig;

  const mount = () => (document.body ?? document.documentElement).append(host);
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
