// Benchmark (not a test): Sprig against wllama in the same headless Chromium,
// on the same GGUF, the same chat question, the same greedy token budget and
// one thread each, alternating runs; once per model (the demo Q4_1 GGUF and,
// when given, the same model re-quantized to Q4_0). Both sides are timed the
// same way in the page: time to first token (TTFT) from submitting the
// question to the first streamed token, prefill = prompt tokens / TTFT,
// decode = (n - 1) / (time from first to last token). Sprig is driven through
// its real UI (tokens counted from the streaming reply's data-live-tokens
// attribute; its own stats line is printed too); wllama (tests/bench/wllama,
// pinned) through its chat completion with a streaming callback.
//
// Before the runs, a second Sprig worker (the build's own worker loader,
// started in the app's page) measures its wasm memory read bandwidth
// (Request::ProbeBandwidth, in the build with feature bench that scripts/bench-browser makes: 256 MiB, best of 5 reads). Decoding a token reads
// every weight matrix once, so GB/s ÷ (weight bytes per token) bounds decode
// speed; each table gives decode as a fraction of that bound. The weight
// bytes per token are the GGUF's tensor data, without the token embedding
// table unless it is tied as the output matrix (no output.weight), read from
// the GGUF header here.
//
// Run by scripts/bench-browser.
// Env: SPRIG_DIST (built dist), RUNS (default 3), MAX_TOKENS (default 64),
// SPRIG_BENCH_Q4_0 (the Q4_0 GGUF; its row is skipped when unset or missing),
// SPRIG_BENCH_7B (a folder with manifest.json and the shards of the converted
// synthetic Mistral-7B mix; skipped when unset), MAX_TOKENS_7B (default 8),
// ONLY_7B (skip everything but the bandwidth probe and the 7B mix).
//
// After the Sprig/wllama tables: Sprig with 2 workers against 1 on the demo,
// and the 7B mix with 2 and 3 workers.

import { fileURLToPath } from 'node:url';
import { mkdtemp, mkdir, symlink, copyFile, rm, open, readFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../server.mjs';
import { launch, launchPersistent } from '../e2e/browser.mjs';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const DIST = process.env.SPRIG_DIST ?? here('../../dist');
const RUNS = Number(process.env.RUNS ?? 3);
const MAX_TOKENS = Number(process.env.MAX_TOKENS ?? 64);
const QUESTION = 'Explain in a few sentences why the sky is blue.';
const PROBE_BYTES = 256 * 1024 * 1024;
const MAX_TOKENS_7B = Number(process.env.MAX_TOKENS_7B ?? 8);
// The baseline of the 7B figures: a dist/ of an earlier commit
// (scripts/bench-browser builds BASELINE's), run alternately with this one.
const BASE_DIST = process.env.SPRIG_BASE_DIST || null;
const BASELINE = process.env.BASELINE || 'baseline';
// What issue 13 measured before its work, on the machine it was filed on.
const ISSUE_7B = { prefill: 2.11, decode: 1.19 };
const CORES = availableParallelism();

// The models: Sprig loads the demo through its catalog (the manifest in
// dist/models/), any other through the picker's URL field, from wllama's
// server (which then sends CORS headers).
const MODELS = [
  { key: 'q4_1', label: 'SmolLM2-135M-Instruct Q4_1 (demo)', path: here('../../models/SmolLM2-135M-Instruct.Q4_1.gguf'), demo: true },
  { key: 'q4_0', label: 'SmolLM2-135M-Instruct Q4_0 (sprig requant)', path: process.env.SPRIG_BENCH_Q4_0 ?? '', demo: false },
].filter((m) => {
  if (existsSync(m.path)) return true;
  console.log(`skipping ${m.label}: ${m.path || 'SPRIG_BENCH_Q4_0 is not set'}${m.path ? ' is missing' : ''}`);
  return false;
});

/**
 * The data size of every tensor of a GGUF file (v2/v3), from its header:
 * each tensor's bytes up to the next one's offset (alignment padding
 * included), the last one's up to the end of the file.
 */
async function ggufTensorSizes(path) {
  const fh = await open(path);
  try {
    const { size: fileSize } = await fh.stat();
    for (let want = 8 << 20; ; want *= 2) {
      const buf = Buffer.alloc(Math.min(want, fileSize));
      await fh.read(buf, 0, buf.length, 0);
      try {
        return parseGgufHeader(buf, fileSize);
      } catch (e) {
        // The header is longer than what was read: read more.
        if (!(e instanceof RangeError) || buf.length >= fileSize) throw e;
      }
    }
  } finally {
    await fh.close();
  }
}

function parseGgufHeader(buf, fileSize) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const u32 = () => { const v = dv.getUint32(p, true); p += 4; return v; };
  const u64 = () => { const v = Number(dv.getBigUint64(p, true)); p += 8; return v; };
  const skip = (n) => { p += n; if (p > buf.length) throw new RangeError('past the read bytes'); };
  const str = () => { const n = u64(); const start = p; skip(n); return buf.toString('utf8', start, p); };
  // Sizes of the fixed-size value types: u8 i8 u16 i16 u32 i32 f32 bool, u64 i64 f64.
  const FIXED = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type) => {
    if (type === 4) return u32();
    if (type === 8) return str();
    if (type === 9) {
      const itemType = u32();
      const n = u64();
      if (FIXED[itemType]) skip(n * FIXED[itemType]);
      else for (let i = 0; i < n; i++) value(itemType);
      return null;
    }
    if (!FIXED[type]) throw new Error(`unknown GGUF value type ${type}`);
    skip(FIXED[type]);
    return null;
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error('not a GGUF file');
  p = 4;
  const version = u32();
  if (version < 2) throw new Error(`GGUF version ${version} is not supported`);
  const tensorCount = u64();
  const kvCount = u64();
  let alignment = 32;
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    const v = value(u32());
    if (key === 'general.alignment' && typeof v === 'number') alignment = v;
  }
  const tensors = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    skip(u32() * 8); // dimensions
    u32(); // type
    tensors.push({ name, offset: u64() });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  tensors.sort((a, b) => a.offset - b.offset);
  tensors.forEach((t, i) => { t.size = (tensors[i + 1]?.offset ?? fileSize - dataStart) - t.offset; });
  return tensors;
}

/** Bytes of weights one decoded token reads: see the header comment. */
async function weightBytesPerToken(path) {
  const tensors = await ggufTensorSizes(path);
  const total = tensors.reduce((s, t) => s + t.size, 0);
  const tied = !tensors.some((t) => t.name === 'output.weight');
  const embeddings = tensors.find((t) => t.name === 'token_embd.weight')?.size ?? 0;
  return { bytes: tied ? total : total - embeddings, tied };
}

// wllama's pages, one folder per model: its own files, its package
// (symlinked) and the model as ./model.gguf.
const wroot = await mkdtemp(join(tmpdir(), 'sprig-bench-wllama-'));
for (const m of MODELS) {
  const dir = join(wroot, m.key);
  await mkdir(dir);
  for (const f of ['index.html', 'bench.js']) await copyFile(here(`wllama/${f}`), join(dir, f));
  await symlink(here('wllama/node_modules/@wllama/wllama'), join(dir, 'wllama'));
  await symlink(m.path, join(dir, 'model.gguf'));
}

const sprigServer = await startServer({ root: DIST });
const wllamaServer = await startServer({ root: wroot, cors: true });
const browser = await launch();

/** Asks a second Sprig worker, started in the app's page, for its read bandwidth. */
async function probeBandwidth() {
  const page = await browser.newPage();
  try {
    await page.goto(sprigServer.url + '/');
    return await page.evaluate((bytes) => new Promise((resolve, reject) => {
      const url = document.querySelector('meta[name="sprig-worker"]')?.content || './sprig-worker_loader.js';
      const worker = new Worker(url);
      const done = (f, v) => { clearTimeout(timer); worker.terminate(); f(v); };
      const timer = setTimeout(() => done(reject, new Error('the worker did not answer within 120 s')), 120_000);
      worker.onerror = (e) => done(reject, new Error(`worker error: ${e.message}`));
      worker.onmessage = ({ data }) => {
        const body = data?.body;
        // Answer in the version the worker speaks (its Ready envelope's `v`).
        if (body?.type === 'ready') worker.postMessage({ v: data.v, body: { type: 'probe_bandwidth', bytes } });
        else if (body?.type === 'bandwidth') done(resolve, body.gb_per_s);
        else if (body?.type === 'error') done(reject, new Error(`${body.kind}: ${body.message}`));
      };
    }), PROBE_BYTES);
  } finally {
    await page.close();
  }
}

/**
 * One Sprig reply through the real UI. `workers` is set before loading (0:
 * Sprig's automatic choice); `url` loads a model by URL (a manifest for a
 * split model); `context` keeps the browser storage between calls (a warm
 * start), else a fresh one is used. Returns the timings, the reply, the stats
 * line and the ready line (load times, memory per worker).
 */
async function runSprig(model, { workers = 0, url = null, context = null, question = QUESTION, maxTokens = MAX_TOKENS, timeout = 300_000, app = sprigServer.url } = {}) {
  const page = context ? await context.newPage() : await browser.newPage();
  const profile = [];
  page.on('console', (m) => { if (/^sprig (profile|timing):/.test(m.text())) profile.push(m.text()); });
  try {
    await page.goto(app + '/');
    await page.getByTestId('settings').click();
    for (const [id, v] of Object.entries({ workers, temperature: 0, 'repeat-penalty': 1, 'max-tokens': maxTokens })) {
      await page.getByTestId(id).fill(String(v));
      await page.getByTestId(id).dispatchEvent('change');
    }
    url ??= model.demo ? null : `${wllamaServer.url}/${model.key}/model.gguf`;
    if (url) {
      await page.getByTestId('model-select').selectOption('custom');
      await page.getByTestId('model-url').fill(url);
    }
    await page.getByTestId('model-load').click();
    await page.getByTestId('model-ready').or(page.getByTestId('model-failed')).waitFor({ timeout });
    if (await page.getByTestId('model-failed').count()) throw new Error(await page.getByTestId('model-failed').textContent());
    const ready = await page.getByTestId('model-ready').textContent();
    await page.getByTestId('new-chat').click();
    await page.getByTestId('composer').fill(question);
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
    await stats.waitFor({ timeout });
    const text = await stats.textContent();
    const exchangeMs = {
      prefill: Number(await stats.getAttribute('data-prefill-exchange-ms')),
      decode: Number(await stats.getAttribute('data-decode-exchange-ms')),
    };
    const memory = Object.fromEntries(await Promise.all(['memory', 'weight', 'cache'].map(async (k) => [k, Number(await stats.getAttribute(`data-${k}-bytes`))])));
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
      own: `own: prefill ${m[5]}, decode ${m[2]} tok/s`,
      marks: marks.length, text: reply, ready, exchangeMs, profile, memory,
    };
  } finally {
    await page.close();
  }
}

async function runWllama(model) {
  const page = await browser.newPage();
  const logs = [];
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') logs.push(`console: ${msg.text()}`); });
  try {
    await page.goto(`${wllamaServer.url}/${model.key}/index.html`);
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
      own: t ? `own: prefill ${t.prompt_per_second.toFixed(1)}, decode ${t.predicted_per_second.toFixed(1)} tok/s, cache_n ${t.cache_n}` : 'no timings',
      marks: r.times.length, multiThread: r.multiThread, text: r.text,
    };
  } finally {
    await page.close();
  }
}

const fig = (r) => ({ prefill: r.prompt / (r.ttft / 1000), decode: (r.n - 1) / (r.decodeMs / 1000), ttft: r.ttft, peak: r.peak ?? NaN });

/** The pids of Chromium's renderer processes (pages and their workers). */
function rendererPids() {
  const pids = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) pids.push(pid);
    } catch { /* the process ended */ }
  }
  return pids;
}

/** Resident memory of each process of `pids`, in bytes (`statm`: pages). */
function rssOf(pids) {
  const rss = new Map();
  for (const pid of pids) {
    try {
      rss.set(pid, Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096);
    } catch { /* the process ended */ }
  }
  return rss;
}

/**
 * Runs `fn` while sampling the renderers' memory every 100 ms; adds `peak`:
 * the largest rise above what they held before (each renderer's rise, one
 * started meanwhile counted whole, one that ended as 0), for either engine
 * the same measure (wasm memory, JS heaps and buffers of the page and its
 * workers). The renderers are looked for once a second (a page started by
 * `fn` may get its own); a sample reads only their `statm`. (A full scan of
 * /proc at every sample took about 8 ms of CPU, 8 % of a core the engines
 * share.)
 */
async function withPeakMemory(fn) {
  let pids = rendererPids();
  const base = rssOf(pids);
  const rise = () => [...rssOf(pids)].reduce((sum, [pid, b]) => sum + Math.max(0, b - (base.get(pid) ?? 0)), 0);
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    for (let n = 1; sampling; n++) {
      if (n % 10 === 0) pids = rendererPids();
      peak = Math.max(peak, rise());
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    const r = await fn();
    return { ...r, peak };
  } finally {
    sampling = false;
    await sampler;
  }
}

const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// Word-level comparison: Sprig shows rendered markdown, wllama the raw text.
const words = (s) => s.replace(/[*_#`>\-]/g, ' ').split(/\s+/).filter(Boolean);

/** Alternating runs of one model; prints one line per run and engine, then its table. */
async function benchModel(model, gbPerS) {
  const { bytes, tied } = await weightBytesPerToken(model.path);
  const bound = gbPerS * 1e9 / bytes;
  console.log(`\n== ${model.label}: ${(bytes / 1e6).toFixed(1)} MB of weights read per token` +
    `${tied ? ' (embeddings tied as the output: counted once)' : ' (without the token embeddings)'}, ` +
    `decode bound ${bound.toFixed(1)} tok/s`);
  const results = { sprig: [], wllama: [] };
  const texts = { sprig: null, wllama: null };
  for (let run = 1; run <= RUNS; run++) {
    for (const [name, fn] of [['sprig', runSprig], ['wllama', runWllama]]) {
      const r = await withPeakMemory(() => fn(model));
      const f = fig(r);
      results[name].push(f);
      texts[name] ??= r.text;
      console.log(`${name.padEnd(6)} run ${run}: prompt ${r.prompt}${r.promptTotal !== r.prompt ? ` (of ${r.promptTotal})` : ''}, ` +
        `TTFT ${f.ttft.toFixed(0)} ms, prefill ${f.prefill.toFixed(1)}, ${r.n} tokens, decode ${f.decode.toFixed(1)} tok/s, peak +${mib(f.peak)} ` +
        `[${r.marks} token events; ${r.own}${r.multiThread !== undefined ? `; multithread ${r.multiThread}` : ''}]`);
      if (process.env.PROFILE && r.profile) console.log(`  ${r.profile.join(' | ')}`);
    }
  }
  const [a, b] = [words(texts.sprig ?? ''), words(texts.wllama ?? '')];
  let same = 0;
  while (same < Math.min(a.length, b.length) && a[same] === b[same]) same++;
  console.log(`replies: ${same} leading words identical (sprig ${a.length} words, wllama ${b.length}); ` +
    `sprig: ${JSON.stringify((texts.sprig ?? '').slice(0, 60))}…`);
  const med = (name, k) => median(results[name].map((f) => f[k]));
  console.log(`\n${model.label}, medians of ${RUNS} alternating runs, 1 thread, ${MAX_TOKENS} greedy tokens:`);
  console.log('| | prefill tok/s | decode tok/s | TTFT ms | peak memory | decode / bound |');
  console.log('|---|---|---|---|---|---|');
  for (const name of ['sprig', 'wllama']) {
    console.log(`| ${name} | ${med(name, 'prefill').toFixed(1)} | ${med(name, 'decode').toFixed(1)} | ` +
      `${med(name, 'ttft').toFixed(0)} | ${mib(med(name, 'peak'))} | ${(100 * med(name, 'decode') / bound).toFixed(0)} % |`);
  }
  console.log(`| Sprig/wllama | ${(med('sprig', 'prefill') / med('wllama', 'prefill')).toFixed(2)} | ` +
    `${(med('sprig', 'decode') / med('wllama', 'decode')).toFixed(2)} | ${(med('sprig', 'ttft') / med('wllama', 'ttft')).toFixed(2)} | ` +
    `${(med('sprig', 'peak') / med('wllama', 'peak')).toFixed(2)} | |`);
  console.log('(peak memory: the largest rise of the Chromium renderer processes\' resident memory during a run, sampled every 100 ms)');
}

/** Sprig alone with K workers against one worker, alternating runs, on the demo. */
async function benchWorkers(model) {
  console.log(`\n== ${model.label}: Sprig with 2 workers (each its own wasm memory, MessageChannel exchanges) against 1`);
  const results = { 1: [], 2: [] };
  for (let run = 1; run <= RUNS; run++) {
    for (const k of [1, 2]) {
      const r = await runSprig(model, { workers: k });
      results[k].push(fig(r));
      console.log(`K=${k} run ${run}: TTFT ${fig(r).ttft.toFixed(0)} ms, prefill ${fig(r).prefill.toFixed(1)}, decode ${fig(r).decode.toFixed(1)} tok/s [${r.own}]`);
    }
  }
  const med = (k, key) => median(results[k].map((f) => f[key]));
  console.log('| | prefill tok/s | decode tok/s | TTFT ms |');
  console.log('|---|---|---|---|');
  for (const k of [1, 2]) console.log(`| K=${k} | ${med(k, 'prefill').toFixed(1)} | ${med(k, 'decode').toFixed(1)} | ${med(k, 'ttft').toFixed(0)} |`);
  console.log(`| K=2/K=1 | ${(med(2, 'prefill') / med(1, 'prefill')).toFixed(2)} | ${(med(2, 'decode') / med(1, 'decode')).toFixed(2)} | ${(med(2, 'ttft') / med(1, 'ttft')).toFixed(2)} |`);
}

/**
 * The 7B mix (a manifest of gguf-split shards, SPRIG_BENCH_7B) in Sprig with
 * K = 2 and 3 workers, one browser profile: the first load downloads into
 * the store, the next ones read it back. wllama cannot load it (one 4 GiB
 * memory), nor can one Sprig worker.
 */
async function bench7b(dir, gbPerS) {
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  let bytes = 0;
  for (const shard of manifest.shards) {
    const tensors = await ggufTensorSizes(join(dir, shard.url));
    bytes += tensors.filter((t) => t.name !== 'token_embd.weight').reduce((s, t) => s + t.size, 0);
  }
  const server = await startServer({ root: dir, cors: true });
  // An on-disk profile: an off-the-record context keeps OPFS in memory,
  // where a few GB of it read back as zeros-length reads.
  const profile = await mkdtemp(join(tmpdir(), 'sprig-bench-7b-'));
  const context = await launchPersistent(profile);
  try {
    console.log(`\n== ${manifest.name}: ${(manifest.total_size / 1e9).toFixed(2)} GB in ${manifest.shards.length} shards, ` +
      `${(bytes / 1e9).toFixed(2)} GB of weights read per token; 1 worker cannot hold it (wasm32: 4 GiB)`);
    console.log('| workers | load | wasm memory per worker | renderer peak | prefill tok/s | decode tok/s | TTFT s | decode / bound |');
    console.log('|---|---|---|---|---|---|---|---|');
    const runs7b = [];
    const row = (label, k, r) => {
      const f = fig(r);
      const load = /(downloaded in [\d.]+ s, loaded in [\d.]+ s|loaded from this device in [\d.]+ s)/.exec(r.ready)?.[1] ?? '?';
      const memory = /workers, memory (.*)$/.exec(r.ready.trim())?.[1] ?? /worker memory (.*)$/.exec(r.ready.trim())?.[1] ?? '?';
      // K workers each read 1/K of the weights, on K cores at the probed rate.
      const bound = gbPerS * 1e9 * Math.min(k, CORES) / bytes;
      console.log(`| ${label}${k} | ${load} | ${memory} | +${mib(f.peak)} | ${f.prefill.toFixed(2)} | ${f.decode.toFixed(2)} | ${(f.ttft / 1000).toFixed(1)} | ` +
        `${(100 * f.decode / bound).toFixed(0)} % of ${bound.toFixed(1)} tok/s (${Math.min(k, CORES)} cores) |`);
      console.log(`  (rank 0 exchanging: prefill ${r.exchangeMs.prefill.toFixed(0)} ms of ${f.ttft.toFixed(0)}, ` +
        `decode ${(r.exchangeMs.decode / Math.max(1, r.n - 1)).toFixed(1)} ms per token of ${(r.decodeMs / Math.max(1, r.n - 1)).toFixed(0)}; ${r.own})`);
      if (process.env.PROFILE) console.log(`  rank 0 ${r.profile.join(' | ')}`);
      return f;
    };
    const ask = (k, app) => withPeakMemory(() => runSprig(null, { workers: k, url: `${server.url}/manifest.json`, context, app, question: 'Why is the sky blue?', maxTokens: MAX_TOKENS_7B, timeout: 1_800_000 }));
    for (const k of [2, 3]) {
      const r = await ask(k);
      row('', k, r);
      runs7b.push(r);
    }
    // K = 2 against the baseline's K = 2, alternating runs.
    const baseServer = BASE_DIST ? await startServer({ root: BASE_DIST }) : null;
    const figs = { now: [], base: [] };
    try {
      for (let run = 1; run <= RUNS; run++) {
        const r = await ask(2);
        figs.now.push(row('', 2, r));
        runs7b.push(r);
        if (baseServer) figs.base.push(row(`${BASELINE} `, 2, await ask(2, baseServer.url)));
      }
    } finally {
      await baseServer?.close();
    }
    const med = (name, key) => median(figs[name].map((f) => f[key]));
    const bound2 = gbPerS * 1e9 * Math.min(2, CORES) / bytes;
    console.log(`\n7B mix, 2 workers, medians of ${RUNS} runs${baseServer ? ` alternating with ${BASELINE}` : ''} (${MAX_TOKENS_7B} greedy tokens, a 14-token question):`);
    console.log(`| | prefill tok/s | decode tok/s | TTFT s | decode / bound |`);
    console.log('|---|---|---|---|---|');
    console.log(`| this build | ${med('now', 'prefill').toFixed(2)} | ${med('now', 'decode').toFixed(2)} | ${(med('now', 'ttft') / 1000).toFixed(2)} | ${(100 * med('now', 'decode') / bound2).toFixed(0)} % |`);
    if (baseServer) {
      console.log(`| ${BASELINE} | ${med('base', 'prefill').toFixed(2)} | ${med('base', 'decode').toFixed(2)} | ${(med('base', 'ttft') / 1000).toFixed(2)} | ${(100 * med('base', 'decode') / bound2).toFixed(0)} % |`);
      console.log(`| ratio | ${(med('now', 'prefill') / med('base', 'prefill')).toFixed(2)} | ${(med('now', 'decode') / med('base', 'decode')).toFixed(2)} | ${(med('now', 'ttft') / med('base', 'ttft')).toFixed(2)} | |`);
    }
    console.log(`| ratio to issue 13's ${ISSUE_7B.prefill} / ${ISSUE_7B.decode} tok/s | ${(med('now', 'prefill') / ISSUE_7B.prefill).toFixed(2)} | ${(med('now', 'decode') / ISSUE_7B.decode).toFixed(2)} | | |`);
    await printMemory(runs7b.at(-1), (q) => runSprig(null, { workers: 2, url: `${server.url}/manifest.json`, context, question: q, maxTokens: 2, timeout: 1_800_000 }));
  } finally {
    await context.close();
    await server.close();
    await rm(profile, { recursive: true, force: true });
  }
}

const gib = (b) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/**
 * The memory criterion: a worker's wasm memory against its weights plus its
 * KV cache, which a worker allocates at load for 4,096 positions (at most
 * the model's context), so that a conversation up to that long allocates no
 * more cache. After a prompt of more than the 256 tokens a forward pass takes
 * at once, every buffer of a prompt has reached its largest size too: what
 * the coordinating worker's memory is then is its peak at any context up to
 * 4,096 tokens. `run` asks a question in the loaded model's page.
 */
async function printMemory(loaded, run) {
  const question = `${'Tell me everything about the history of the blue sky and the ocean. '.repeat(22)}Why?`;
  const r = await run(question);
  const { memory, weight, cache } = r.memory;
  console.log(`memory (coordinating worker, after a ${r.promptTotal}-token prompt): wasm memory ${gib(memory)}; ` +
    `weights ${gib(weight)} + KV cache for 4,096 positions ${gib(cache)} = ${gib(weight + cache)}; ` +
    `ratio ${(memory / (weight + cache)).toFixed(3)} (criterion ≤ 1.1); every worker at load: ` +
    `${/memory (.*)$/.exec(loaded.ready.trim())?.[1] ?? '?'}`);
}

try {
  const gbPerS = await probeBandwidth();
  if (!(gbPerS > 0)) throw new Error(`the bandwidth probe gave ${gbPerS} GB/s`);
  console.log(`wasm memory read bandwidth: ${gbPerS.toFixed(2)} GB/s (one worker thread, ${PROBE_BYTES >> 20} MiB, best of 5 reads)`);
  if (!process.env.ONLY_7B) {
    for (const model of MODELS) await benchModel(model, gbPerS);
    const demo = MODELS[0];
    await printMemory(await runSprig(demo, { maxTokens: 2 }), (q) => runSprig(demo, { question: q, maxTokens: 2 }));
    await benchWorkers(MODELS[0]);
  }
  const big = process.env.SPRIG_BENCH_7B;
  if (big && existsSync(join(big, 'manifest.json'))) await bench7b(big, gbPerS);
  else console.log(`\nskipping the 7B mix: ${big ? `${big}/manifest.json is missing` : 'SPRIG_BENCH_7B is not set'}`);
} finally {
  await browser.close();
  await sprigServer.close();
  await wllamaServer.close();
  await rm(wroot, { recursive: true, force: true });
}
