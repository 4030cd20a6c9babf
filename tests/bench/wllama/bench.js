// The wllama side of scripts/bench-browser: served next to a link to
// node_modules/@wllama/wllama (as ./wllama/) and the model (as ./model.gguf).
// window.benchWllama({ question, maxTokens, threads }) loads the model
// (single-thread wasm: no COOP/COEP, n_threads), runs one greedy chat
// completion and times the first and last streamed token in the page.
import { Wllama } from './wllama/esm/index.js';

window.benchWllama = async ({ question, maxTokens, threads }) => {
  const wllama = new Wllama({ default: './wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
  const l0 = performance.now();
  await wllama.loadModelFromUrl(new URL('./model.gguf', location.href).href, {
    n_threads: threads, n_gpu_layers: 0, n_ctx: 2048, useCache: false,
  });
  const loadMs = performance.now() - l0;
  const times = [];
  let last = null;
  let text = '';
  const t0 = performance.now();
  await wllama.createChatCompletion({
    messages: [{ role: 'user', content: question }],
    max_tokens: maxTokens, temperature: 0, temp: 0, top_k: 1, penalty_repeat: 1,
    cache_prompt: false, stream: true,
    onData: (chunk) => {
      const now = performance.now();
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) { times.push(now); text += piece; }
      last = chunk;
    },
  });
  const info = { multiThread: wllama.isMultithread?.(), ctx: wllama.getLoadedContextInfo?.() };
  await wllama.exit();
  return { t0, times, text, usage: last?.usage ?? null, timings: last?.timings ?? null, loadMs, multiThread: info.multiThread };
};
window.benchReady = true;
