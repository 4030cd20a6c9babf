// A real HTTP server for Sprig's browser tests: serves a directory (the built
// dist/) with correct MIME types, HTTP Range support (with ETag / If-Range) and
// CORS, keeps a log of the requests it answered so tests can assert on network
// traffic, and can inject faults into chosen responses to simulate an
// unreliable network while the worker downloads model files.
//
// As a module:
//   const s = await startServer({ root, port: 0, cors });
//   s.url; s.requests; s.bytesServed(/\.gguf$/);
//   s.setFaults({ cutAfter: [5_000_000] }); ...; s.clearFaults();
//   await s.close();
// As a command: `node tests/server.mjs --root dist --port 8081 [--cors] [--faults '<json>']`.
//
// Faults (all optional; see setFaults below):
//   match        which request paths the faults apply to: RegExp, or a substring (default /\.gguf$/)
//   cutAfter     cumulative body-byte offsets, counted over all matching responses
//                since setFaults; the response that would send the byte at such an
//                offset sends exactly the bytes before it and then loses its
//                connection (its content-length was announced, so the client sees a
//                truncated body). Each offset fires once.
//   corrupt      { path, offset, times }: flip (XOR 0xff) the byte at file offset
//                `offset` in the first `times` (default 1, Infinity allowed) response
//                bodies to paths matching `path` (default: `match`) that carry it
//   status       { code, times }: answer the next `times` (default 1) matching
//                requests with `code` and a short text body
//   ignoreRange  answer matching requests with 200 and the whole file, like a
//                server without Range support
//   delayMs      pause this long between the 64 KiB writes of a matching body, so a
//                test can interrupt a download in progress
//
// Each log entry in s.requests is pushed when the request arrives and updated in
// place as it is answered: { method, path, range, status, bytes, cut, corrupted,
// aborted }, where `bytes` counts the file body bytes sent (0 for error answers),
// `cut` says a cutAfter fault dropped the connection, `corrupted` that a byte was
// flipped, `aborted` that the client went away before the body was complete.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.gguf': 'application/octet-stream',
};

/** Bodies are read and written in pieces of this size (the unit of `delayMs` pacing). */
const CHUNK = 64 * 1024;

/** Parses a single `bytes=a-b` range against a file of `size` bytes; null if absent, 'bad' if unsatisfiable. */
export function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'bad';
  let start, end;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return 'bad';
  return { start, end };
}

/** Whether `path` matches `pattern`: a RegExp, or a substring; a missing pattern matches everything. */
function matches(pattern, path) {
  if (pattern == null) return true;
  if (pattern instanceof RegExp) {
    pattern.lastIndex = 0; // a /g or /y pattern would otherwise remember where it stopped
    return pattern.test(path);
  }
  return path.includes(String(pattern));
}

/** Whether an `If-Range` value still names this version of the file (strong comparison, as RFC 9110 asks). */
function ifRangeHolds(value, etag, lastModified) {
  if (value == null) return true;
  const v = value.trim();
  if (v.startsWith('"') || v.startsWith('W/')) return v === etag; // weak tags never match
  return v === lastModified;
}

const FAULT_KEYS = new Set(['match', 'cutAfter', 'corrupt', 'status', 'ignoreRange', 'delayMs']);

/** Checks a setFaults() spec and turns it into the mutable state the server consumes. */
function compileFaults(spec = {}) {
  for (const key of Object.keys(spec)) {
    if (!FAULT_KEYS.has(key)) throw new TypeError(`setFaults: unknown fault "${key}"`);
  }
  const count = (value, what) => {
    const n = value === undefined ? 1 : Number(value);
    if (!(n >= 0) || (!Number.isInteger(n) && n !== Infinity)) throw new TypeError(`setFaults: bad ${what}`);
    return n;
  };
  const match = spec.match ?? /\.gguf$/;
  const cuts = (spec.cutAfter ?? []).map(Number).sort((a, b) => a - b);
  if (cuts.some((n) => !Number.isInteger(n) || n < 0)) throw new TypeError('setFaults: bad cutAfter');
  let corrupt = null;
  if (spec.corrupt) {
    const offset = Number(spec.corrupt.offset);
    if (!Number.isInteger(offset) || offset < 0) throw new TypeError('setFaults: bad corrupt.offset');
    corrupt = { path: spec.corrupt.path ?? match, offset, remaining: count(spec.corrupt.times, 'corrupt.times') };
  }
  let status = null;
  if (spec.status) {
    const code = Number(spec.status.code);
    if (!Number.isInteger(code) || code < 100 || code > 599) throw new TypeError('setFaults: bad status.code');
    status = { code, remaining: count(spec.status.times, 'status.times') };
  }
  const delayMs = Number(spec.delayMs ?? 0);
  if (!(delayMs >= 0)) throw new TypeError('setFaults: bad delayMs');
  return {
    match,
    cuts, // offsets still to fire, ascending
    served: 0, // body bytes sent by matching responses since setFaults
    corrupt,
    status,
    ignoreRange: Boolean(spec.ignoreRange),
    delayMs,
  };
}

/** Turns the command line's JSON fault spec into a setFaults() one: strings there are RegExp sources. */
export function faultsFromJson(json) {
  const spec = JSON.parse(json);
  if (typeof spec.match === 'string') spec.match = new RegExp(spec.match);
  if (typeof spec.corrupt?.path === 'string') spec.corrupt.path = new RegExp(spec.corrupt.path);
  compileFaults(spec); // throws here on a bad spec
  return spec;
}

/** Resolves once `res` can take more data, or is gone. */
function drained(res) {
  if (res.destroyed || res.closed) return Promise.resolve(); // 'close' has been and gone
  return new Promise((ok) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      ok();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Drops the connection of `res` mid-body: first lets everything written so far
 * (headers included) reach the kernel, so the client gets exactly those bytes,
 * then closes the socket without completing the announced content-length.
 */
function cut(res) {
  const socket = res.socket;
  if (!socket) {
    res.destroy();
    return;
  }
  res.flushHeaders(); // writeHead only stores the headers until the first body write
  socket.end(() => socket.destroy());
}

export async function startServer({ root, port = 0, host = '127.0.0.1', cors = false } = {}) {
  const base = resolve(root);
  const requests = [];
  let faults = null;

  /** The live fault state if it applies to `path`, else null (read per chunk, so set/clear acts at once). */
  const faultsFor = (path) => (faults && matches(faults.match, path) ? faults : null);

  /**
   * Streams bytes start..end of `file` into `res` piece by piece, counting them
   * into `entry` and applying the cut, corrupt and delay faults as it goes.
   */
  async function sendBody(res, file, start, end, entry) {
    const stream = createReadStream(file, { start, end, highWaterMark: CHUNK });
    let pos = start; // file offset of the next byte to send
    try {
      for await (const chunk of stream) {
        if (res.destroyed) break;
        const f = faultsFor(entry.path);
        let part = chunk;
        let cutHere = false;
        if (f && f.cuts.length > 0 && f.cuts[0] < f.served + chunk.length) {
          part = chunk.subarray(0, f.cuts[0] - f.served);
          f.cuts.shift();
          cutHere = true;
        }
        if (f) f.served += part.length;
        const c = faults?.corrupt;
        if (c && c.remaining > 0 && c.offset >= pos && c.offset < pos + part.length && matches(c.path, entry.path)) {
          part[c.offset - pos] ^= 0xff; // the read stream's buffer is ours to change
          c.remaining -= 1;
          entry.corrupted = true;
        }
        entry.bytes += part.length;
        pos += part.length;
        const more = part.length === 0 || res.write(part);
        if (cutHere) {
          entry.cut = true;
          cut(res);
          return;
        }
        if (!more) await drained(res);
        if (f?.delayMs > 0 && pos <= end) await sleep(f.delayMs);
      }
      if (!res.destroyed) res.end();
    } catch {
      res.destroy();
    } finally {
      stream.destroy();
    }
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const entry = {
      method: req.method,
      path: url.pathname,
      range: req.headers.range ?? null,
      status: null,
      bytes: 0,
      cut: false,
      corrupted: false,
      aborted: false,
    };
    requests.push(entry);
    res.on('close', () => {
      if (!res.writableFinished && !entry.cut) entry.aborted = true;
    });
    const corsHeaders = cors
      ? {
          'access-control-allow-origin': '*',
          'access-control-expose-headers': 'content-length, content-range, accept-ranges, etag',
        }
      : {};
    /** Answers with `code`, extra headers and a short text body (none for HEAD). */
    const answer = (code, text, headers = {}) => {
      entry.status = code;
      res.writeHead(code, { ...corsHeaders, 'content-type': 'text/plain; charset=utf-8', ...headers });
      res.end(req.method === 'HEAD' ? undefined : text);
    };

    if (cors && req.method === 'OPTIONS') {
      // A CORS preflight, e.g. for a Range request from a page on another origin.
      entry.status = 204;
      res.writeHead(204, {
        ...corsHeaders,
        'access-control-allow-methods': 'GET, HEAD',
        'access-control-allow-headers': 'range, if-range',
        'access-control-max-age': '600',
      }).end();
      return;
    }

    const fault = faultsFor(entry.path);
    if (fault?.status && fault.status.remaining > 0) {
      fault.status.remaining -= 1;
      answer(fault.status.code, `injected ${fault.status.code}\n`);
      return;
    }

    let path;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      answer(400, 'bad path');
      return;
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(base, path));
    if (file !== base && !file.startsWith(base + sep)) {
      answer(403, 'forbidden');
      return;
    }
    let info;
    try {
      info = await stat(file);
      if (!info.isFile()) throw new Error('not a file');
    } catch {
      answer(404, 'not found');
      return;
    }
    const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
    const lastModified = info.mtime.toUTCString();
    const headers = {
      ...corsHeaders,
      'content-type': MIME[extname(file)] ?? 'application/octet-stream',
      'accept-ranges': fault?.ignoreRange ? 'none' : 'bytes',
      'cache-control': 'no-cache',
      etag,
      'last-modified': lastModified,
    };
    // The app's page: only the widget view (`?embed=1`) may be framed, by any
    // site; the full app by none (the app refuses to run framed in any case).
    // Other pages (the tests' host sites) are left alone.
    if (file.endsWith(`${sep}index.html`)) {
      const embed = new URL(req.url, 'http://host').searchParams.get('embed') === '1';
      headers['content-security-policy'] = `frame-ancestors ${embed ? '*' : "'none'"}`;
    }
    // The Range is ignored (whole file, 200) when faults say so, or when If-Range
    // names another version of the file than this one.
    const useRange = !fault?.ignoreRange && ifRangeHolds(req.headers['if-range'], etag, lastModified);
    const range = useRange ? parseRange(req.headers.range, info.size) : null;
    if (range === 'bad') {
      entry.status = 416;
      res.writeHead(416, { ...corsHeaders, 'content-range': `bytes */${info.size}` }).end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: info.size - 1 };
    headers['content-length'] = String(end - start + 1);
    if (range) headers['content-range'] = `bytes ${start}-${end}/${info.size}`;
    entry.status = range ? 206 : 200;
    res.writeHead(entry.status, headers);
    if (req.method === 'HEAD' || info.size === 0) {
      res.end();
      return;
    }
    await sendBody(res, file, start, end, entry);
  });
  await new Promise((ok, fail) => server.once('error', fail).listen(port, host, ok));
  const { port: actual } = server.address();
  return {
    url: `http://${host}:${actual}`,
    requests,
    /** Replaces any faults with these (see the top of this file); counters start afresh. */
    setFaults: (spec) => {
      faults = compileFaults(spec);
    },
    clearFaults: () => {
      faults = null;
    },
    /** Body bytes sent so far to requests whose path matches `pattern` (RegExp or substring; all if omitted). */
    bytesServed: (pattern) => requests.reduce((sum, r) => (matches(pattern, r.path) ? sum + r.bytes : sum), 0),
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : dflt;
  };
  const faults = arg('--faults');
  const spec = faults ? faultsFromJson(faults) : null; // a bad spec fails before the server starts
  const s = await startServer({
    root: arg('--root', 'dist'),
    port: Number(arg('--port', '8081')),
    cors: process.argv.includes('--cors'),
  });
  if (spec) {
    s.setFaults(spec);
    console.error(`faults: ${faults}`);
  }
  console.log(`serving ${arg('--root', 'dist')} at ${s.url}`);
}
