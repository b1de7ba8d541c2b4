// Shared helpers for the browser tests: the browser, the servers under test, and waiting on
// what a page has seen.
//
// Why Node + playwright-core + Debian's Chromium, rather than a Rust CDP crate: the point of these
// tests is what a real `EventSource` sees, so the driver only has to open pages, run script in
// them, watch requests and take screenshots. playwright-core is the most widely maintained
// driver for that, ships no browser of its own (we point it at `/usr/bin/chromium`, so nothing
// is downloaded), and is one npm package with no dependencies, pinned by package-lock.json.
// It exposes what the cases assert on — the `eventsource` request with its final headers
// (cookie, `last-event-id`), per-context cookies, and a raw CDP session for the bytes and
// timing of a stream — without hand-written protocol code. Node's built-in runner (`node
// --test`) needs nothing else and prints a closing summary CI can read.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR)
  : path.join(ROOT, 'target');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CI = process.env.CI === 'true';
export const SCREENSHOTS = path.join(TARGET_DIR, 'browser-screenshots');

/// The flags the project runs Chromium with. playwright adds `--user-data-dir` with a fresh
/// temporary profile for every `launch` (and removes it on close), so each launch starts clean.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

/// Why a test cannot run here (a missing browser or redis-server), or `false`. Under CI=true
/// nothing is skipped: the test runs and fails loudly instead.
export function missing(what) {
  if (CI) return false;
  if (what === 'chromium' && !fs.existsSync(CHROMIUM)) {
    return `no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`;
  }
  if (what === 'redis-server' && !onPath('redis-server')) {
    return 'redis-server is not installed (apt-get install redis-server)';
  }
  return false;
}

function onPath(cmd) {
  return (process.env.PATH || '')
    .split(path.delimiter)
    .some((dir) => dir && fs.existsSync(path.join(dir, cmd)));
}

/// Launches headless Chromium; close it with `browser.close()`.
export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
}

// ---------------------------------------------------------------------------------------------
// Processes

const children = new Set();
process.on('exit', () => {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {}
  }
});

/// The path of a built example binary (`cargo build --examples`).
export function exampleBinary(name) {
  return path.join(TARGET_DIR, 'debug', 'examples', name);
}

/// Starts an example binary with `env` (ADDR defaults to `127.0.0.1:0`; the hub's JWT_SECRET
/// to `HUB_SECRET`, so that `hubToken` signs tokens it accepts), waits for its
/// `listening on http://ADDR` line and returns `{ url, port, proc, output, exited, stop }`.
export async function startExample(name, env = {}) {
  const bin = exampleBinary(name);
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it with \`cargo build --examples\``);
  }
  const defaults = { RUST_LOG: process.env.RUST_LOG || 'warn', ADDR: '127.0.0.1:0' };
  if (name === 'hub') Object.assign(defaults, { JWT_SECRET: HUB_SECRET, PUBLIC_TOPICS: '*', ALLOW_HOSTS: '' });
  const proc = spawn(bin, [], {
    env: { ...process.env, ...defaults, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal });
    });
  });
  let output = '';
  const server = { proc, exited, get output() { return output; } };
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not print "listening on" within 20 s:\n${output}`)),
      20_000,
    );
    const onData = (chunk) => {
      output += chunk;
      const m = /listening on (http:\/\/[^\s]+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    };
    proc.stdout.setEncoding('utf8').on('data', onData);
    proc.stderr.setEncoding('utf8').on('data', (chunk) => {
      output += chunk;
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
  server.url = url;
  server.port = Number(new URL(url).port);
  /// Sends `signal` and waits for the process to exit; returns `{code, signal, ms}`.
  server.stop = async (sig = 'SIGKILL') => {
    const started = performance.now();
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    const result = await exited;
    return { ...result, ms: performance.now() - started };
  };
  return server;
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test's own servers).
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/// Starts a throw-away redis-server (no RDB snapshots, AOF in a temporary dir) and waits until
/// it is ready. Returns `{ url, stop }`.
export async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-sse-browser-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.add(proc);
    const exited = new Promise((resolve) => proc.on('exit', (code) => {
      children.delete(proc);
      resolve(code);
    }));
    let output = '';
    const ready = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      proc.stdout.setEncoding('utf8').on('data', (chunk) => {
        output += chunk;
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      proc.stderr.setEncoding('utf8').on('data', (chunk) => (output += chunk));
      exited.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ready) {
      return {
        url: `redis://127.0.0.1:${port}`,
        async stop() {
          if (proc.exitCode === null) proc.kill('SIGKILL');
          await exited;
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    proc.kill('SIGKILL');
    await exited;
    if (attempt >= 2) throw new Error(`redis-server did not start:\n${output}`);
  }
}

/// Serves one HTML page at `/` on 127.0.0.1 with a port of its own (a second origin).
export async function pageServer(html = '<!doctype html><meta charset="utf-8"><title>page</title>') {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    origin: `http://127.0.0.1:${srv.address().port}`,
    async stop() {
      srv.closeAllConnections();
      srv.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Tokens for the hub (examples/hub.rs): HS256 JWTs with `sse` rights

/// The JWT_SECRET the hub is started with (`startExample('hub')`).
export const HUB_SECRET = 'tests/browser: the hub\'s HS256 secret, 32 bytes or more';

/// A token for the hub, signed with `secret`: `rights` is the `sse` claim (`publish` and
/// `subscribe` selector lists, `admin`), valid for `ttl` seconds.
export function hubToken(rights, { ttl = 3600, secret = HUB_SECRET } = {}) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const head = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sse: rights, exp: Math.floor(Date.now() / 1000) + ttl })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/// A token that may do everything on the hub: publish, subscribe, `/connections`.
export const PUBLISHER_TOKEN = hubToken({ publish: ['*'], subscribe: ['*'], admin: true });

/// The `Authorization` header of `token` (by default, `PUBLISHER_TOKEN`).
export const authorization = (token = PUBLISHER_TOKEN) => ({ authorization: `Bearer ${token}` });

// ---------------------------------------------------------------------------------------------
// The hub's HTTP API

/// `POST /publish/{topic}[?event=NAME]` with `data` as the body, with `token` (by default,
/// `PUBLISHER_TOKEN`); returns the event's id.
export async function publish(base, topic, data, event, { token } = {}) {
  const query = event ? `?event=${encodeURIComponent(event)}` : '';
  const res = await fetch(`${base}/publish/${encodeURIComponent(topic)}${query}`, {
    method: 'POST',
    body: data,
    headers: { 'content-type': 'text/plain; charset=utf-8', ...authorization(token) },
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`publish to ${topic} answered ${res.status}: ${text}`);
  const { id } = JSON.parse(text);
  if (typeof id !== 'string' || !id) throw new Error(`publish answered without an id: ${text}`);
  return id;
}

/// The hub's open streams on `topic`, from `GET /connections` (with an admin token: by
/// default, `PUBLISHER_TOKEN`).
export async function streamsOn(base, topic, { token } = {}) {
  const res = await fetch(`${base}/connections`, { headers: authorization(token) });
  if (!res.ok) throw new Error(`GET /connections answered ${res.status}: ${await res.text()}`);
  const list = await res.json();
  return list.filter((c) => c.topic === topic);
}

// ---------------------------------------------------------------------------------------------
// In the page

/// Opens `new EventSource(url, {withCredentials})` in the page, recording into `window.sse`:
/// `received` ({type, data, lastEventId} for `message` and each of `names`), `opens`,
/// `errors` (the readyState at each error), `source`.
export async function openSource(page, url, { withCredentials = false, names = [] } = {}) {
  await page.evaluate(
    ({ url, withCredentials, names }) => {
      const source = new EventSource(url, { withCredentials });
      const sse = { source, received: [], opens: 0, errors: [] };
      window.sse = sse;
      const record = (e) =>
        sse.received.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
      source.onmessage = record;
      for (const name of names) source.addEventListener(name, record);
      source.onopen = () => sse.opens++;
      source.onerror = () => sse.errors.push(source.readyState);
    },
    { url, withCredentials, names },
  );
}

/// Waits until `predicate(window.sse, arg)` (run in the page) is true; the timeout is only a
/// failure guard. The error shows what the page had seen.
export async function waitForSse(page, predicate, arg, { timeout = 15_000, what = 'condition' } = {}) {
  try {
    await page.waitForFunction(
      ([src, arg]) => window.sse && (0, eval)(`(${src})`)(window.sse, arg),
      [predicate.toString(), arg],
      { timeout, polling: 20 },
    );
  } catch (err) {
    const seen = await page
      .evaluate(() => window.sse && {
        readyState: window.sse.source.readyState,
        opens: window.sse.opens,
        errors: window.sse.errors,
        received: window.sse.received.map((e) => ({ ...e, data: e.data.length > 200 ? `${e.data.slice(0, 200)}… (${e.data.length} chars)` : e.data })),
      })
      .catch(() => 'page gone');
    err.message = `waiting for ${what}: ${err.message}\npage saw: ${JSON.stringify(seen, null, 1)}`;
    throw err;
  }
}

/// What the page has received so far.
export function received(page) {
  return page.evaluate(() => window.sse.received);
}

/// Records every `eventsource` request the page makes, with its final headers (cookie and
/// last-event-id included, as sent). Returns the live list.
export function recordEventSourceRequests(page) {
  const requests = [];
  page.on('request', (request) => {
    if (request.resourceType() !== 'eventsource') return;
    const entry = { url: request.url(), at: performance.now(), headers: null };
    entry.headersReady = request.allHeaders().then((h) => (entry.headers = h), () => (entry.headers = {}));
    requests.push(entry);
  });
  return requests;
}

/// Polls `fn` (in Node) until it returns a truthy value; the timeout is a failure guard.
export async function until(fn, { timeout = 15_000, what = 'condition' } = {}) {
  const deadline = performance.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/// Saves a screenshot of `page` as `target/browser-screenshots/<name>.png`; returns its path.
export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/// Follows the page's `EventSource` requests through a CDP session of its own: for each, the
/// raw bytes received (`Network.streamResourceContent`), when it was sent and when it ended, in
/// the browser's own monotonic clock (seconds). Returns the live list.
export async function recordStreams(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const streams = [];
  const byId = new Map();
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.type !== 'EventSource') return;
    const stream = { requestId: e.requestId, url: e.request.url, sentAt: e.timestamp, endedAt: null, bytes: '' };
    streams.push(stream);
    byId.set(e.requestId, stream);
  });
  cdp.on('Network.responseReceived', async (e) => {
    const stream = byId.get(e.requestId);
    if (!stream) return;
    stream.status = e.response.status;
    try {
      const { bufferedData } = await cdp.send('Network.streamResourceContent', { requestId: e.requestId });
      stream.bytes = Buffer.from(bufferedData, 'base64').toString('utf8') + stream.bytes;
    } catch (err) {
      stream.streamError = err.message;
    }
  });
  cdp.on('Network.dataReceived', (e) => {
    const stream = byId.get(e.requestId);
    if (stream && e.data) stream.bytes += Buffer.from(e.data, 'base64').toString('utf8');
  });
  cdp.on('Network.loadingFinished', (e) => {
    const stream = byId.get(e.requestId);
    if (stream) stream.endedAt = e.timestamp;
  });
  cdp.on('Network.loadingFailed', (e) => {
    const stream = byId.get(e.requestId);
    if (stream) {
      stream.endedAt = e.timestamp;
      stream.failed = e.errorText;
    }
  });
  return streams;
}
