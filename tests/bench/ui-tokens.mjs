// Benchmark (not a test; nothing here asserts a timing): the UI's main-thread
// time per streamed token, with a short and a long conversation open, to show
// whether a token costs the page more when more messages are shown (earlier
// messages rendered or compared again per token).
//
// The model runs in Web Workers, so what the page's main thread does while a
// reply streams is the UI's work: receiving each token, updating the
// conversation, rendering the Markdown of the reply, styling and layout, and
// the periodic save of the streaming reply. Chromium counts it per page
// (CDP Performance.getMetrics, main thread only): TaskDuration (the wall time
// of its tasks; on a busy 2-core machine that includes time the thread waited
// for a core), ThreadTime (its CPU time), and the parts of TaskDuration:
// ScriptDuration (JS and the UI's wasm), LayoutDuration, RecalcStyleDuration,
// TaskOtherDuration (the rest: rendering the frames, messages, ...). The
// deltas between the first streamed token and the reply's end, divided by the
// tokens streamed in between, are the figures. Apart: the main thread's task
// time from pressing Enter to the first token (adding the two new bubbles,
// saving, building the prompt; the prefill itself runs in the worker), and
// its idle load before sending (task ms per s), which the per-token figures
// include.
//
// Per run: a fresh page of one persistent profile (the demo model stays
// stored, so only the first run downloads it) whose conversation store
// (IndexedDB "sprig", object store "conversations") is replaced by one seeded
// conversation of N messages (alternating user / assistant, each assistant
// message a few paragraphs of Markdown: lists, code blocks, links, a table),
// which the app restores on reload; the demo model loads, Settings are set to
// greedy (temperature 0, repeat penalty 1) and MAX_TOKENS new tokens, one more
// question is sent and the reply streams.
//
// The model is asked the same in every case: the page's Generate request is
// cut, on its way to the worker, to its system message (if any) and the last
// question, so that both cases prefill the same prompt, stream the same greedy
// reply at the same speed, and differ only in what the UI holds and shows. The
// UI still does all its own work (it builds and encodes the whole
// conversation; only the worker sees less). Without the cut, a 100-message
// conversation fills the demo model's context: here ~7,700 prompt tokens took
// ten minutes to prefill, and decoding ran 9x slower, which also changes how
// many tokens fall between two of the UI's periodic saves. FULL_PROMPT=1 sends
// the whole conversation anyway.
//
// The cases alternate (2, 100, 2, 100, …) for RUNS runs each. Nothing polls the DOM while a reply streams: a
// MutationObserver watching only the attributes data-live-tokens and
// aria-busy calls back into node at the first token and at the end (and one
// watching only the conversation's own children, for a finished reply shown
// as a new bubble).
//
// Run by scripts/bench-ui.
// Env: SPRIG_DIST (built dist), RUNS (default 3), MAX_TOKENS (default 128),
// MESSAGES (seeded conversation lengths, default "2,100"; the ratio is the
// last to the first), FULL_PROMPT=1 (the worker gets the whole conversation),
// SPRIG_COMMIT (printed; default: git rev-parse).

import { fileURLToPath } from 'node:url';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execSync } from 'node:child_process';
import { startServer } from '../server.mjs';
import { launchPersistent } from '../e2e/browser.mjs';
import { startDemo, waitReady, setSettings, LOAD_TIMEOUT } from '../e2e/app.mjs';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const DIST = process.env.SPRIG_DIST ?? here('../../dist');
const RUNS = Number(process.env.RUNS ?? 3);
const MAX_TOKENS = Number(process.env.MAX_TOKENS ?? 128);
const SIZES = (process.env.MESSAGES ?? '2,100').split(',').map(Number);
const COMMIT = process.env.SPRIG_COMMIT
  ?? (() => { try { return execSync('git rev-parse --short HEAD', { cwd: here('../..') }).toString().trim(); } catch { return '?'; } })();
const QUESTION = 'Write a detailed step-by-step guide to planting a vegetable garden, as a numbered list of at least ten steps, each with a short explanation.';
// With FULL_PROMPT, a long conversation's prefill takes minutes here (not
// measured, only waited for).
const REPLY_TIMEOUT = 900_000;
const IDLE_MS = 2_000;
const FULL_PROMPT = Boolean(process.env.FULL_PROMPT);
// Durations (seconds, printed as ms) and counts, as Chromium names them.
const DURATIONS = ['TaskDuration', 'ThreadTime', 'ScriptDuration', 'LayoutDuration', 'RecalcStyleDuration', 'TaskOtherDuration', 'DevToolsCommandDuration'];
const COUNTS = ['LayoutCount', 'RecalcStyleCount'];
const METRICS = [...DURATIONS, ...COUNTS];
// The columns of the per-token figures: [heading, metric].
const COLUMNS = [
  ['task ms', 'TaskDuration'], ['CPU ms', 'ThreadTime'], ['script ms', 'ScriptDuration'], ['layout ms', 'LayoutDuration'],
  ['style ms', 'RecalcStyleDuration'], ['other ms', 'TaskOtherDuration'], ['layouts', 'LayoutCount'],
];

// ---- The seeded conversation ----------------------------------------------

const TOPICS = [
  ['sourdough bread', 'starter', 'hydration', 'bake'],
  ['a Rust web server', 'router', 'handler', 'deploy'],
  ['learning the guitar', 'chord', 'strumming', 'practice'],
  ['a trip to Lisbon', 'tram', 'viewpoint', 'pastry'],
  ['home network security', 'router', 'firewall', 'update'],
  ['training for a 10 km run', 'interval', 'tempo', 'rest'],
  ['a SQL query that is slow', 'index', 'join', 'plan'],
  ['composting at home', 'greens', 'browns', 'turn'],
];

function userMessage(i) {
  const [topic, a, b] = TOPICS[i % TOPICS.length];
  return `Can you help me with ${topic}? I am not sure about the ${a} and how the ${b} fits in (question ${i + 1}).`;
}

function assistantMessage(i) {
  const [topic, a, b, c] = TOPICS[i % TOPICS.length];
  return [
    `Sure. Here is how I would approach **${topic}**, step by step. The short version: get the *${a}* right first, ` +
      `then tune the ${b}, and only then worry about when to ${c}. Most problems people hit come from doing these in ` +
      `the opposite order, so it is worth taking them one at a time (reply ${i + 1}).`,
    `1. **Start with the ${a}.** Check it before anything else; a small mistake here shows up everywhere later.\n` +
      `2. **Adjust the ${b}** in small steps, writing down what you changed, so you can go back.\n` +
      `3. **Decide when to ${c}** from what you observe, not from a fixed schedule.\n` +
      `   - look for the obvious signs first;\n   - then the subtle ones, with \`notes\` you keep as you go.\n` +
      `4. Repeat the loop once more and compare the results.`,
    'A small checklist you can keep at hand:\n\n```text\n' +
      `[ ] ${a}: checked\n[ ] ${b}: adjusted (one change at a time)\n[ ] ${c}: scheduled\nnotes: ` +
      `${'-'.repeat(20)}\n` + '```',
    `| step | what to watch | typical mistake |\n|---|---|---|\n| ${a} | consistency | rushing it |\n` +
      `| ${b} | small changes | changing two things at once |\n| ${c} | timing | following the clock, not the signs |`,
    `If you want to read more, [this overview](https://example.org/guides/${i}) covers the basics well, and ` +
      `[the longer guide](https://example.com/${topic.replace(/\W+/g, '-')}) goes into the ${b} in depth. ` +
      `Tell me what you tried and what happened, and I can suggest the next change.`,
  ].join('\n\n');
}

/** A conversation of `n` messages as the app saves it (src/state.rs `Conversation`). */
function seededConversation(n) {
  const now = Date.now();
  const entries = [];
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      entries.push({ role: 'user', content: userMessage(i / 2), stats: null });
    } else {
      entries.push({
        role: 'assistant',
        content: assistantMessage((i - 1) / 2),
        stats: {
          stop: 'eos', prompt_tokens: 40 + 10 * i, prefilled_tokens: 40, generated_tokens: 300, prefill_tok_s: 80,
          decode_tok_s: 40, dropped_messages: 0, prefill_exchange_ms: 0, decode_exchange_ms: 0,
          memory_bytes: 0, weight_bytes: 0, cache_bytes: 0,
        },
      });
    }
  }
  return { id: `cbench-${n}-${now}`, title: userMessage(0).slice(0, 47) + '…', entries, updated: now, rev: 1 };
}

/** Replaces every saved conversation of the page's origin by `conversation` (src/store.rs's layout). */
async function seed(page, conversation) {
  await page.evaluate((c) => new Promise((resolve, reject) => {
    const open = indexedDB.open('sprig', 1);
    open.onupgradeneeded = () => {
      if (!open.result.objectStoreNames.contains('conversations')) open.result.createObjectStore('conversations');
    };
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction('conversations', 'readwrite');
      const store = tx.objectStore('conversations');
      store.clear();
      store.put(JSON.stringify(c), c.id);
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onerror = () => reject(tx.error);
    };
  }), conversation);
}

// ---- One run ----------------------------------------------------------------

const server = await startServer({ root: DIST });
const profile = await mkdtemp(join(tmpdir(), 'sprig-bench-ui-'));
const context = await launchPersistent(profile);
// Counts the conversation saves (IndexedDB puts) the page makes.
await context.addInitScript(() => {
  const put = IDBObjectStore.prototype.put;
  window.__benchPuts = 0;
  IDBObjectStore.prototype.put = function (...args) { window.__benchPuts++; return put.apply(this, args); };
});
// The cut of the prompt (see the header): wraps the page's Worker postMessage.
if (!FULL_PROMPT) {
  await context.addInitScript(() => {
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (message, ...rest) {
      const body = message?.body;
      if (body?.type === 'generate' && Array.isArray(body.messages)) {
        const kept = [...body.messages.filter((m) => m.role === 'system'), body.messages.at(-1)];
        window.__benchCut = { from: body.messages.length, to: kept.length };
        message = { ...message, body: { ...body, messages: kept } };
      }
      return post.call(this, message, ...rest);
    };
  });
}

/** `promise`, or an error after `ms` (the timer cleared either way). */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no ${what} within ${ms / 1000} s`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function metrics(cdp) {
  const { metrics: list } = await cdp.send('Performance.getMetrics');
  const m = Object.fromEntries(list.map(({ name, value }) => [name, value]));
  return Object.fromEntries(METRICS.map((k) => [k, DURATIONS.includes(k) ? m[k] * 1000 : m[k]])); // seconds -> ms
}
const diff = (a, b) => Object.fromEntries(METRICS.map((k) => [k, b[k] - a[k]]));

async function run(n, runNo) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  try {
    await page.goto(server.url + '/');
    await page.getByTestId('composer').waitFor();
    await seed(page, seededConversation(n));
    await page.reload();
    const seededAssistants = n / 2;
    await page.waitForFunction((k) => document.querySelectorAll('[data-testid="message-assistant"]').length === k,
      Math.floor(seededAssistants), { timeout: 30_000 }).catch(async () => {
      const got = await page.locator('[data-testid="message-assistant"]').count();
      throw new Error(`the seeded conversation is not shown: ${got} assistant messages, expected ${Math.floor(seededAssistants)}`);
    });
    const shown = {
      user: await page.getByTestId('message-user').count(),
      assistant: await page.getByTestId('message-assistant').count(),
    };
    const t = Date.now();
    await startDemo(page);
    await waitReady(page, LOAD_TIMEOUT);
    const load = (Date.now() - t) / 1000;
    await setSettings(page, { temperature: 0, 'repeat-penalty': 1, 'max-tokens': MAX_TOKENS });
    await page.getByTestId('composer').fill(QUESTION);

    // The recorder: first token and end, by attribute mutations only.
    let onFirst, onEnd;
    const first = new Promise((r) => { onFirst = r; });
    const end = new Promise((r) => { onEnd = r; });
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    await page.exposeBinding('__benchMark', (_source, kind) => {
      // Taken at once, before anything else: the snapshot, and the tokens counted by then.
      const snap = Promise.all([
        metrics(cdp),
        cdp.send('Runtime.evaluate', { expression: 'window.__bench.n', returnByValue: true }).then((r) => r.result.value),
      ]);
      (kind === 'first' ? onFirst : onEnd)(snap);
    });
    await page.evaluate(() => {
      const rec = (window.__bench = { t0: null, tFirst: null, tEnd: null, n: 0, nFirst: 0 });
      document.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && rec.t0 === null) rec.t0 = performance.now();
      }, { capture: true });
      new MutationObserver((muts) => {
        const now = performance.now();
        for (const m of muts) {
          if (m.attributeName === 'data-live-tokens') {
            const v = Number(m.target.getAttribute('data-live-tokens'));
            if (!(v > 0)) continue;
            rec.n = v;
            if (rec.tFirst === null) { rec.tFirst = now; rec.nFirst = v; rec.putsFirst = window.__benchPuts; window.__benchMark('first'); }
            rec.tLast = now;
          } else if (m.attributeName === 'aria-busy' && rec.tFirst !== null && rec.tEnd === null
            && m.target.dataset.testid === 'message-assistant' && m.target.getAttribute('aria-busy') === 'false') {
            rec.tEnd = now;
            rec.putsEnd = window.__benchPuts;
            window.__benchMark('end');
          }
        }
      }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-live-tokens', 'aria-busy'] });
      // A UI that shows the finished reply as a new bubble (the streaming
      // one removed) ends it with a child added to the conversation: watched
      // without its subtree, so the tokens' re-rendering is not observed.
      new MutationObserver((muts) => {
        const now = performance.now();
        for (const m of muts) {
          for (const node of m.addedNodes) {
            if (rec.tFirst !== null && rec.tEnd === null && node.nodeType === 1
              && node.dataset.testid === 'message-assistant' && node.getAttribute('aria-busy') === 'false') {
              rec.tEnd = now;
              rec.putsEnd = window.__benchPuts;
              window.__benchMark('end');
            }
          }
        }
      }).observe(document.querySelector('section.conversation'), { childList: true });
    });

    // The idle load of the main thread, with the model ready.
    const idle0 = await metrics(cdp);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idle = diff(idle0, await metrics(cdp)).TaskDuration / (IDLE_MS / 1000);

    const m0 = await metrics(cdp);
    await page.getByTestId('composer').press('Enter');
    const [m1, k1] = await within(first, REPLY_TIMEOUT, 'first token');
    const [m2, k2] = await within(end, REPLY_TIMEOUT, 'end of the reply');

    // After the end, nothing is measured: the stats line and the DOM are read.
    const bubbles = page.getByTestId('message-assistant');
    const count = await bubbles.count();
    const stats = bubbles.nth(count - 1).getByTestId('reply-stats');
    await stats.waitFor({ timeout: 30_000 });
    const text = await stats.textContent();
    const s = /^(\d+) tokens · ([\d.]+) tok\/s · prompt (\d+) tokens \((\d+) new, ([\d.]+) tok\/s\)/.exec(text);
    if (!s) throw new Error(`unexpected stats: ${text}`);
    const rec = await page.evaluate(() => window.__bench);
    const cut = await page.evaluate(() => window.__benchCut ?? null);
    if (!FULL_PROMPT && !cut) throw new Error('the Generate request was not seen (the prompt was not cut)');
    const tokens = k2 - k1;
    if (!(tokens > 0)) throw new Error(`no tokens between the two snapshots (${k1} -> ${k2})`);
    const streamed = diff(m1, m2);
    const r = {
      n, shown, load, idle, count,
      text: await bubbles.nth(count - 1).locator('.md').textContent(),
      generated: Number(s[1]), decode: Number(s[2]), prompt: Number(s[3]),
      stop: text.includes('token limit') ? 'max tokens' : text.includes('context full') ? 'context full' : 'eos',
      tokens, k1, k2,
      perToken: Object.fromEntries(METRICS.map((k) => [k, streamed[k] / tokens])),
      send: diff(m0, m1).TaskDuration,
      // (Not CDP's Nodes: it counts the whole renderer, closed pages' nodes not yet collected too.)
      elements: await page.evaluate(() => document.getElementsByTagName('*').length),
      devtools: streamed.DevToolsCommandDuration,
      saves: rec.putsEnd - rec.putsFirst,
      wallPerToken: (rec.tLast - rec.tFirst) / Math.max(1, rec.n - rec.nFirst),
      ttft: rec.tFirst - rec.t0,
      errors,
    };
    console.log(`run ${runNo}, ${n} messages (shown ${shown.user} user + ${shown.assistant} assistant; model ready in ${load.toFixed(1)} s): ` +
      `prompt ${r.prompt} tokens${cut ? ` (worker given ${cut.to} of ${cut.from} messages)` : ''}, first token after ${(r.ttft / 1000).toFixed(1)} s; ${r.generated} tokens (${r.stop}), ` +
      `decode ${r.decode.toFixed(1)} tok/s; measured over tokens ${k1}..${k2}: main thread per token: ` +
      COLUMNS.map(([h, k]) => `${h.replace(' ms', '')} ${r.perToken[k].toFixed(2)}${h.endsWith('ms') ? ' ms' : ''}`).join(', ') +
      ` (${r.elements} elements in the page; CDP commands ${r.devtools.toFixed(1)} ms in all); ` +
      `${r.wallPerToken.toFixed(1)} ms between tokens, ${r.saves} saves meanwhile; send -> first token ${r.send.toFixed(0)} ms of main thread; idle ${r.idle.toFixed(1)} ms/s` +
      (errors.length ? `; page errors: ${errors.join(' | ')}` : ''));
    return r;
  } finally {
    await page.close();
  }
}

// ---- The runs and the table -------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

try {
  const version = await (async () => {
    const page = await context.newPage();
    try { return (await (await context.newCDPSession(page)).send('Browser.getVersion')).product; } finally { await page.close(); }
  })();
  console.log(`UI time per token: dist built from ${COMMIT}; ${RUNS} alternating runs of ${SIZES.join(', ')} seeded messages; ` +
    `greedy, at most ${MAX_TOKENS} new tokens; ${FULL_PROMPT ? 'the worker gets the whole conversation' : 'the worker gets the last question only'}; ${version}`);
  const results = Object.fromEntries(SIZES.map((n) => [n, []]));
  const t0 = Date.now();
  for (let i = 1; i <= RUNS; i++) {
    for (const n of SIZES) results[n].push(await run(n, i));
  }
  const med = (n, f) => median(results[n].map(f));
  console.log(`\nmedians of ${RUNS} runs (dist from ${COMMIT}); the main thread's time per streamed token, from the first token to the reply's end:`);
  const cols = [
    ['tokens', (r) => r.generated, 0],
    ...COLUMNS.map(([h, k]) => [`${h}/token`, (r) => r.perToken[k], 2]),
    ['ms between tokens', (r) => r.wallPerToken, 1], ['decode tok/s', (r) => r.decode, 1], ['saves', (r) => r.saves, 0],
    ['send -> first token, task ms', (r) => r.send, 0], ['idle task ms/s', (r) => r.idle, 1],
  ];
  console.log(`| messages shown | ${cols.map(([h]) => h).join(' | ')} |`);
  console.log(`|---|${cols.map(() => '---').join('|')}|`);
  for (const n of SIZES) console.log(`| ${n} | ${cols.map(([, f, d]) => med(n, f).toFixed(d)).join(' | ')} |`);
  const [a, b] = [SIZES[0], SIZES.at(-1)];
  console.log(`| ${b}/${a} | ${cols.map(([, f]) => (med(b, f) / med(a, f)).toFixed(2)).join(' | ')} |`);
  const texts = new Set(Object.values(results).flat().map((r) => r.text));
  console.log(`replies: ${texts.size === 1 ? 'all identical' : `${texts.size} different texts`}`);
  console.log(`(${((Date.now() - t0) / 1000).toFixed(0)} s for the runs)`);
} finally {
  await context.close();
  await server.close();
  await rm(profile, { recursive: true, force: true });
}
