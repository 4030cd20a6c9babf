// Benchmark (not a test): Sprig against wllama in the same headless Chromium,
// on the same GGUF, the same chat question, the same greedy token budget and
// one thread each, alternating runs. Both sides are timed the same way in the
// page: time to first token (TTFT) from submitting the question to the first
// streamed token, prefill = prompt tokens / TTFT, decode = (n - 1) / (time from
// first to last token). Sprig is driven through its real UI (tokens counted
// from the streaming reply's data-live-tokens attribute; its own stats line is
// printed too); wllama (tests/bench/wllama, pinned) through its chat completion
// with a streaming callback. Run by scripts/bench-browser.
//
// Env: SPRIG_DIST (built dist), RUNS (default 3), MAX_TOKENS (default 64).

import { fileURLToPath } from 'node:url';
import { mkdtemp, symlink, copyFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../server.mjs';
import { launch } from '../e2e/browser.mjs';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const DIST = process.env.SPRIG_DIST ?? here('../../dist');
const MODEL = process.env.SPRIG_BENCH_MODEL ?? here('../../models/SmolLM2-135M-Instruct.Q4_1.gguf');
const RUNS = Number(process.env.RUNS ?? 3);
const MAX_TOKENS = Number(process.env.MAX_TOKENS ?? 64);
const QUESTION = 'Explain in a few sentences why the sky is blue.';

// wllama's page: its own files, its package (symlinked) and the model.
const wroot = await mkdtemp(join(tmpdir(), 'sprig-bench-wllama-'));
for (const f of ['index.html', 'bench.js']) await copyFile(here(`wllama/${f}`), join(wroot, f));
await symlink(here('wllama/node_modules/@wllama/wllama'), join(wroot, 'wllama'));
await symlink(MODEL, join(wroot, 'model.gguf'));

const sprigServer = await startServer({ root: DIST });
const wllamaServer = await startServer({ root: wroot });
const browser = await launch();

async function runSprig() {
  const page = await browser.newPage();
  try {
    await page.goto(sprigServer.url + '/');
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-ready').waitFor({ timeout: 300_000 });
    await page.getByTestId('settings').click();
    for (const [id, v] of Object.entries({ temperature: 0, 'repeat-penalty': 1, 'max-tokens': MAX_TOKENS })) {
      await page.getByTestId(id).fill(String(v));
      await page.getByTestId(id).dispatchEvent('change');
    }
    await page.getByTestId('new-chat').click();
    await page.getByTestId('composer').fill(QUESTION);
    await page.evaluate(() => {
      const rec = (window.__bench = { t0: null, marks: [] });
      document.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && rec.t0 === null) rec.t0 = performance.now();
      }, { capture: true });
      new MutationObserver((muts) => {
        const now = performance.now();
        for (const m of muts) {
          const v = m.target.getAttribute('data-live-tokens');
          if (v !== null && Number(v) > 0) rec.marks.push([now, Number(v)]);
        }
      }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-live-tokens'] });
    });
    await page.getByTestId('composer').press('Enter');
    const stats = page.getByTestId('reply-stats').first();
    await stats.waitFor({ timeout: 300_000 });
    const text = await stats.textContent();
    const m = /^(\d+) tokens · ([\d.]+) tok\/s · prompt (\d+) tokens \((\d+) new, ([\d.]+) tok\/s\)/.exec(text);
    if (!m) throw new Error(`unexpected stats: ${text}`);
    const { t0, marks } = await page.evaluate(() => window.__bench);
    const reply = (await page.getByTestId('message-assistant').first().locator('.md').textContent()) ?? '';
    const n = Number(m[1]);
    const first = marks.find(([, k]) => k >= 1);
    const lastMark = marks.filter(([, k]) => k === n).at(0) ?? marks.at(-1);
    if (t0 === null || !first) throw new Error(`no token marks recorded (${marks.length})`);
    return {
      prompt: Number(m[4]), promptTotal: Number(m[3]), n,
      ttft: first[0] - t0, decodeMs: lastMark[0] - first[0],
      own: `own stats: prefill ${m[5]} tok/s, decode ${m[2]} tok/s`,
      marks: marks.length, text: reply,
    };
  } finally {
    await page.close();
  }
}

async function runWllama() {
  const page = await browser.newPage();
  const logs = [];
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') logs.push(`console: ${msg.text()}`); });
  try {
    await page.goto(wllamaServer.url + '/index.html');
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 }).catch((e) => {
      throw new Error(`wllama page did not start: ${e.message}\n${logs.join('\n')}`);
    });
    const r = await page.evaluate((o) => window.benchWllama(o), { question: QUESTION, maxTokens: MAX_TOKENS, threads: 1 })
      .catch((e) => { throw new Error(`wllama run failed: ${e.message}\n${logs.join('\n')}`); });
    const n = r.usage?.completion_tokens ?? r.timings?.predicted_n ?? r.times.length;
    const prompt = r.timings?.prompt_n ?? r.usage?.prompt_tokens;
    const t = r.timings;
    return {
      prompt, promptTotal: r.usage?.prompt_tokens ?? prompt, n,
      ttft: r.times[0] - r.t0, decodeMs: r.times.at(-1) - r.times[0],
      own: t ? `own timings: prefill ${t.prompt_per_second.toFixed(1)} tok/s, decode ${t.predicted_per_second.toFixed(1)} tok/s (cache_n ${t.cache_n})` : 'no timings',
      marks: r.times.length, multiThread: r.multiThread, text: r.text,
    };
  } finally {
    await page.close();
  }
}

const fig = (r) => ({ prefill: r.prompt / (r.ttft / 1000), decode: (r.n - 1) / (r.decodeMs / 1000), ttft: r.ttft });
const results = { sprig: [], wllama: [] };
const texts = { sprig: null, wllama: null };
// Word-level comparison: Sprig shows rendered markdown, wllama the raw text.
const words = (s) => s.replace(/[*_#`>\-]/g, ' ').split(/\s+/).filter(Boolean);
try {
  for (let run = 1; run <= RUNS; run++) {
    for (const [name, fn] of [['sprig', runSprig], ['wllama', runWllama]]) {
      const r = await fn();
      const f = fig(r);
      results[name].push(f);
      texts[name] ??= r.text;
      console.log(`${name} run ${run}: prompt ${r.prompt} tokens${r.promptTotal !== r.prompt ? ` (of ${r.promptTotal})` : ''}, ` +
        `TTFT ${f.ttft.toFixed(0)} ms, prefill ${f.prefill.toFixed(1)} tok/s; ${r.n} tokens, decode ${f.decode.toFixed(1)} tok/s ` +
        `[${r.marks} token events; ${r.own}${r.multiThread !== undefined ? `; multithread ${r.multiThread}` : ''}]`);
    }
  }
  const [a, b] = [words(texts.sprig ?? ''), words(texts.wllama ?? '')];
  let same = 0;
  while (same < Math.min(a.length, b.length) && a[same] === b[same]) same++;
  console.log(`\nreplies: ${same} leading words identical (sprig ${a.length} words, wllama ${b.length})` +
    `\n  sprig:  ${JSON.stringify((texts.sprig ?? '').slice(0, 160))}\n  wllama: ${JSON.stringify((texts.wllama ?? '').slice(0, 160))}`);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const med = (name, k) => median(results[name].map((f) => f[k]));
  console.log(`\nmedians over ${RUNS} alternating runs, 1 thread, ${MAX_TOKENS} greedy tokens:`);
  console.log('| | prefill tok/s | decode tok/s | TTFT ms |');
  console.log('|---|---|---|---|');
  for (const name of ['sprig', 'wllama']) {
    console.log(`| ${name} | ${med(name, 'prefill').toFixed(1)} | ${med(name, 'decode').toFixed(1)} | ${med(name, 'ttft').toFixed(0)} |`);
  }
  console.log(`| Sprig/wllama | ${(med('sprig', 'prefill') / med('wllama', 'prefill')).toFixed(2)} | ` +
    `${(med('sprig', 'decode') / med('wllama', 'decode')).toFixed(2)} | ${(med('sprig', 'ttft') / med('wllama', 'ttft')).toFixed(2)} |`);
} finally {
  await browser.close();
  await sprigServer.close();
  await wllamaServer.close();
  await rm(wroot, { recursive: true, force: true });
}
