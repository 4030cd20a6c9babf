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
// As a command: `node tests/server.mjs --root dist --port 8081 [--cors] [--faults '<json>']`,
// with hub mode: `... [--hub ORG/REPO=DIR]... [--hub-port N] [--cdn-port N] [--ttl SECONDS]
// [--cdn-faults '<json>']` (one line per repository gives its URL).
//
// Hub mode emulates a model hub such as Hugging Face, on two more origins:
//   const hub = await startHub({ repos: { 'ORG/REPO': dir }, ttlMs });
//   hub.fileUrl('ORG/REPO', 'split/m.manifest.json')  // `${hub.url}/ORG/REPO/resolve/main/split/m.manifest.json`
//   hub.cdn.setFaults({ cutAfter: [...] }); hub.cdn.requests; hub.cdn.bytesServed(/\.gguf$/);
//   await hub.replace('ORG/REPO', 'm.gguf', '/tmp/m-v2.gguf');  // a new version, a new ETag
//   hub.expireSignatures(); hub.requests; await hub.close();
// A file URL `${hub.url}/ORG/REPO/resolve/REVISION/PATH` (any revision) answers
// 302 with `Location` a CDN URL signed for this request only:
// `${hub.cdn.url}/blobs/ID/NAME?Expires=MS&X-Amz-Nonce=N&X-Amz-Signature=HMAC`,
// where ID names the file's current version (a URL resolved against the signed
// one loses the signature and is refused), and with CORS, `X-Linked-Etag` (the CDN's ETag of that
// version) and `X-Linked-Size`; an unknown file is a 404 with `X-Error-Code:
// EntryNotFound`. The CDN is a startServer as above (Range, ETag/If-Range,
// CORS with the range headers exposed, faults, log; each entry's `signature`)
// that answers 403 to a malformed signature, one that does not match, or one
// past its `Expires` (ttlMs after it was given, 10 minutes by default) or
// revoked by expireSignatures(). hub.replace() makes a local file the new
// version of a repository file: the hub redirects to it from then on, with a
// new ETag; URLs signed before still reach the old version, as on a real CDN.
// Both answer CORS preflights; hub.setFaults acts on the hub's own answers.
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
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { basename, extname, join, normalize, resolve, sep } from 'node:path';
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

/**
 * The file a URL path names under the directory `base`: 'bad' when the path
 * does not decode, null when it leaves `base`; a path ending in `/` keeps its
 * separator (the caller adds index.html).
 */
function inRoot(base, pathname) {
  let path;
  try {
    path = decodeURIComponent(pathname);
  } catch {
    return 'bad';
  }
  const file = normalize(join(base, path));
  return file === base || file.startsWith(base + sep) ? file : null;
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

/**
 * A server answering from `root`, or, given `route(url, entry)`, from what
 * `route` says for each request: `{ file, etag }` serves that file (with the
 * Range, ETag and fault machinery below), `{ code, text, headers }` answers
 * that, null is a 404. (The hub and the CDN of startHub are such routes.)
 */
export async function startServer({ root, port = 0, host = '127.0.0.1', cors = false, route = null } = {}) {
  const base = route ? null : resolve(root);
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

    let file;
    let etag = null; // a route's own ETag for the file, else one from its size and time
    if (route) {
      const to = await route(url, entry);
      if (!to) {
        answer(404, 'not found');
        return;
      }
      if (to.code) {
        answer(to.code, to.text ?? '', to.headers);
        return;
      }
      ({ file, etag = null } = to);
    } else {
      file = inRoot(base, url.pathname);
      if (file === 'bad') {
        answer(400, 'bad path');
        return;
      }
      if (file === null) {
        answer(403, 'forbidden');
        return;
      }
      if (file.endsWith(sep)) file += 'index.html';
    }
    let info;
    try {
      info = await stat(file);
      if (!info.isFile()) throw new Error('not a file');
    } catch {
      answer(404, 'not found');
      return;
    }
    etag ??= `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
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

/** The headers a hub and its CDN let a page on another origin read. */
const HUB_EXPOSED = 'content-length, content-range, accept-ranges, etag, x-linked-etag, x-linked-size, x-repo-commit, x-error-code';

/**
 * A model hub in the manner of Hugging Face's, on an origin of its own, with
 * its CDN on a third (see the top of this file). `repos` maps "ORG/REPO" to
 * the directory holding that repository's files.
 */
export async function startHub({ repos, host = '127.0.0.1', port = 0, cdnPort = 0, ttlMs = 10 * 60_000 } = {}) {
  const dirs = new Map();
  for (const [name, dir] of Object.entries(repos ?? {})) {
    if (!/^[\w.-]+\/[\w.-]+$/.test(name)) throw new TypeError(`startHub: "${name}" is not ORG/REPO`);
    dirs.set(name, resolve(dir));
  }
  if (dirs.size === 0) throw new TypeError('startHub: no repos');
  if (!(ttlMs > 0)) throw new TypeError('startHub: bad ttlMs');
  const secret = randomBytes(32);
  const sign = (path, expires, nonce) => createHmac('sha256', secret).update(`${path}\n${expires}\n${nonce}`).digest('hex');
  let nonces = 0; // signed URLs given so far; each has its own
  let validFrom = 0; // nonces below this were revoked by expireSignatures()
  let versions = 0;
  const replaced = new Map(); // "ORG/REPO/PATH" -> { file, etag } of a new version
  const blobs = new Map(); // the CDN's objects: id -> { file, etag }
  const cors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': HUB_EXPOSED };

  /** The version of `path` (`raw` as in the URL) in `repo` the hub serves now: { file, etag, size }, or null. */
  async function current(repo, raw, path) {
    let version = replaced.get(`${repo}/${path}`);
    if (!version) {
      const file = inRoot(dirs.get(repo), '/' + raw);
      if (typeof file !== 'string' || file.endsWith(sep)) return null;
      version = { file, etag: null };
    }
    let info;
    try {
      info = await stat(version.file);
    } catch {
      return null;
    }
    if (!info.isFile()) return null;
    const etag = version.etag ?? `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
    return { file: version.file, etag, size: info.size };
  }

  const cdn = await startServer({
    host,
    port: cdnPort,
    cors: true,
    // `/blobs/ID/NAME?Expires=MS&X-Amz-Nonce=N&X-Amz-Signature=HEX`, signed by the hub.
    route: async (url, entry) => {
      const m = /^\/blobs\/([0-9a-f]{32})\/[^/]+$/.exec(url.pathname);
      const blob = m && blobs.get(m[1]);
      if (!blob) return null;
      const q = url.searchParams;
      const [expires, nonce, signature] = [q.get('Expires'), q.get('X-Amz-Nonce'), q.get('X-Amz-Signature')];
      entry.signature = signature;
      const refuse = (why) => ({ code: 403, text: `AccessDenied: ${why}\n`, headers: { 'x-error-code': 'AccessDenied' } });
      if (!/^\d{1,16}$/.test(expires ?? '') || !/^\d{1,16}$/.test(nonce ?? '') || !/^[0-9a-f]{64}$/.test(signature ?? '')) {
        return refuse('malformed signature');
      }
      const want = Buffer.from(sign(url.pathname, expires, nonce), 'hex');
      if (!timingSafeEqual(want, Buffer.from(signature, 'hex'))) return refuse('the signature does not match');
      if (Number(expires) < Date.now() || Number(nonce) < validFrom) return refuse('the request has expired');
      return blob;
    },
  });

  const hub = await startServer({
    host,
    port,
    cors: true,
    // `/ORG/REPO/resolve/REVISION/PATH`: 302 to a freshly signed CDN URL.
    route: async (url, entry) => {
      const m = /^\/([^/]+\/[^/]+)\/resolve\/[^/]+\/(.+)$/.exec(url.pathname);
      let path = null;
      try {
        path = m && decodeURIComponent(m[2]);
      } catch {
        // not a path: a 404 below
      }
      const version = path && dirs.has(m[1]) ? await current(m[1], m[2], path) : null;
      if (!version) {
        return { code: 404, text: 'Entry not found\n', headers: { ...cors, 'x-error-code': 'EntryNotFound' } };
      }
      const id = createHash('sha256').update(`${m[1]}/${path}\n${version.etag}`).digest('hex').slice(0, 32);
      blobs.set(id, { file: version.file, etag: version.etag });
      const blobPath = `/blobs/${id}/${encodeURIComponent(basename(path))}`;
      const expires = Date.now() + ttlMs;
      const nonce = nonces++;
      const location = `${cdn.url}${blobPath}?Expires=${expires}&X-Amz-Nonce=${nonce}&X-Amz-Signature=${sign(blobPath, expires, nonce)}`;
      entry.location = location;
      return {
        code: 302,
        text: `Found. Redirecting to ${location}`,
        headers: { ...cors, location, 'x-linked-etag': version.etag, 'x-linked-size': String(version.size), 'x-repo-commit': '0'.repeat(40) },
      };
    },
  });

  return {
    url: hub.url,
    /** The hub's own log (as startServer's; `location` is the signed URL it redirected to). */
    requests: hub.requests,
    /** The hub's faults (answers before any redirect); the CDN's are cdn.setFaults. */
    setFaults: hub.setFaults,
    clearFaults: hub.clearFaults,
    /** The CDN: url, requests (with each one's `signature`), setFaults, clearFaults, bytesServed. */
    cdn,
    /** The URL of `path` in repository `repo` on branch main. */
    fileUrl: (repo, path) => `${hub.url}/${repo}/resolve/main/${path.split('/').map(encodeURIComponent).join('/')}`,
    /**
     * Makes `file` (a local path) the new version of `path` in `repo`, with a
     * new ETag: from now on the hub redirects there; signed URLs given before
     * still reach the old version, as on a real CDN.
     */
    replace: async (repo, path, file) => {
      if (!dirs.has(repo)) throw new TypeError(`replace: no repository ${repo}`);
      const info = await stat(file);
      versions += 1;
      replaced.set(`${repo}/${path}`, { file: resolve(file), etag: `"${info.size.toString(16)}-v${versions}"` });
    },
    /** Every signed URL given so far is refused from now on, as expired. */
    expireSignatures: () => {
      validFrom = nonces;
    },
    close: async () => {
      await hub.close();
      await cdn.close();
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : dflt;
  };
  const faults = arg('--faults');
  const spec = faults ? faultsFromJson(faults) : null; // a bad spec fails before the server starts
  const cdnFaults = arg('--cdn-faults');
  const cdnSpec = cdnFaults ? faultsFromJson(cdnFaults) : null;
  const repos = {};
  process.argv.forEach((a, i) => {
    if (a !== '--hub') return;
    const [repo, dir] = (process.argv[i + 1] ?? '').split(/=(.*)/s);
    if (!dir) throw new TypeError(`--hub takes ORG/REPO=DIR, not "${process.argv[i + 1]}"`);
    repos[repo] = dir;
  });
  const hubbed = Object.keys(repos).length > 0;
  const hub = hubbed
    ? await startHub({
        repos,
        port: Number(arg('--hub-port', '0')),
        cdnPort: Number(arg('--cdn-port', '0')),
        ttlMs: Number(arg('--ttl', '600')) * 1000,
      })
    : null;
  const s = await startServer({
    root: arg('--root', 'dist'),
    port: Number(arg('--port', '8081')),
    cors: process.argv.includes('--cors'),
  });
  if (spec) {
    s.setFaults(spec);
    console.error(`faults: ${faults}`);
  }
  if (cdnSpec && hub) {
    hub.cdn.setFaults(cdnSpec);
    console.error(`CDN faults: ${cdnFaults}`);
  }
  console.log(`serving ${arg('--root', 'dist')} at ${s.url}`);
  for (const [repo, dir] of Object.entries(repos)) {
    console.log(`hub repository ${repo} (${dir}) at ${hub.url}/${repo}/resolve/main/, CDN at ${hub.cdn.url}`);
  }
}
