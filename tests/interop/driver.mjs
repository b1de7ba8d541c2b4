// Independent parsers read what the hub writes: the `eventsource` npm package and Python's
// httpx-sse, each in its own process, against the hub server binary (examples/hub.rs).
//
//     HUB_BIN=target/debug/examples/hub PYTHON=python3 node tests/interop/driver.mjs
//
// Run by .ci/suites/interop.sh, which builds the hub and installs both clients. For each backend
// (memory; Redis Streams too when `redis-server` is there — required under CI=true):
//
// - live: both clients subscribe, then the driver publishes a generated set of tricky events
//   (CR, LF, CRLF, leading spaces, trailing newlines, empty data, non-ASCII up to astral emoji,
//   long lines, field-lookalike data, named events) and compares what each client fired with
//   what was published: data with CR and CRLF turned into LF, the event type, and the
//   `lastEventId` the hub assigned. Exactly, field by field, with a diff on any difference.
// - replay: the same events again, from history, through `?lastEventId=` (a client resuming).
// - reconnect: the server goes away under an `eventsource` client, which reconnects by itself
//   and sends `Last-Event-ID`: the memory backend answers with the `gap` event naming that id,
//   the Redis backend with exactly the events missed while the client was away.
//
// Ends with the line `interop: N passed, M failed` (`, 1 skipped` when the Redis backend could
// not be checked: no redis-server, outside CI), and exits 1 if anything failed.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { EventSource } from "eventsource";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HUB_BIN = process.env.HUB_BIN ?? path.join(HERE, "../../target/debug/examples/hub");
const PYTHON = process.env.PYTHON ?? "python3";
const CI = process.env.CI === "true";
// How long any one wait may take before the check fails: a failure guard, never a pause.
const GUARD_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// Results

let passed = 0;
let failed = 0;
let skipped = 0;

function pass(name) {
  passed += 1;
  console.log(`ok    ${name}`);
}

function fail(name, ...details) {
  failed += 1;
  console.log(`FAIL  ${name}`);
  for (const line of details) console.log(`      ${line}`);
}

/** Passes when `got` deep-equals `want`; otherwise fails with both, in JSON. */
function checkEqual(name, got, want) {
  if (JSON.stringify(got) === JSON.stringify(want)) pass(name);
  else fail(name, `expected ${JSON.stringify(want)}`, `got      ${JSON.stringify(got)}`);
}

// ---------------------------------------------------------------------------------------------
// The events: what is published, and what a conforming client must fire for it.

const long = (n, seed) => Array.from({ length: n }, (_, i) => seed[i % seed.length]).join("");

const CASES = [
  { name: "plain", data: "hello" },
  { name: "lf", data: "line one\nline two" },
  { name: "cr", data: "line one\rline two" },
  { name: "crlf", data: "line one\r\nline two" },
  { name: "mixed line ends", data: "a\r\n\r\nb\n\rc\r\rd\n\ne" },
  { name: "leading space", data: " x" },
  { name: "leading spaces on each line", data: "  two\n   three\r\n\tTab" },
  { name: "only spaces", data: "   " },
  { name: "trailing lf", data: "trailing\n" },
  { name: "trailing crlf", data: "trailing\r\n" },
  { name: "trailing cr", data: "trailing\r" },
  { name: "only a newline", data: "\n" },
  { name: "blank lines only", data: "\r\n\n\r" },
  { name: "empty data", data: "" },
  { name: "non-ascii", data: "héllo wörld — ünïcödé, 日本語, Ελληνικά, עברית" },
  { name: "astral emoji", data: "😀🚀 🇪🇺 👩‍👩‍👧 𝄞 𠜎" },
  { name: "unicode separators are not line ends", data: "a\u2028b\u2029c\u0085d\u000be\u000cf" },
  { name: "bom inside the stream", data: "\ufeffbom" },
  { name: "nul in data", data: "a\u0000b" },
  { name: "colons", data: ": not a comment\ndata: not a field\nid: 7" },
  { name: "field lookalikes", data: "x\n\nevent: evil\nid: 666\nretry: 1\n\ndata: injected" },
  { name: "long line (100 000 chars)", data: long(100_000, "0123456789abcdef") },
  { name: "long non-ascii line", data: long(30_000, "é😀日") },
  { name: "many lines", data: Array.from({ length: 500 }, (_, i) => `line ${i}`).join("\r\n") },
  { name: "named event", data: '{"eur":1.08}', event: "price" },
  { name: "named event, multi-line", data: "alert\r\nsecond line", event: "alert" },
  { name: "named event, non-ascii name", data: "x", event: "naïve-ünïcödé" },
  { name: "named event, dotted name", data: "y", event: "chat.message" },
  { name: "named event, empty data", data: "", event: "ping" },
];

/** What the client must see: CR and CRLF become LF (each ends exactly one line). */
const normalize = (data) => data.replace(/\r\n/g, "\n").replace(/\r/g, "\n");

const EVENT_NAMES = [...new Set(CASES.filter((c) => c.event).map((c) => c.event))];

// ---------------------------------------------------------------------------------------------
// Processes

const children = new Set();

function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

function killAll() {
  for (const child of children) child.kill("SIGKILL");
}
process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    killAll();
    process.exit(2);
  });
}

function withGuard(promise, what, ms = GUARD_MS) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort() {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/** Starts the hub binary; resolves once it prints its address. */
async function startHub({ port = 0, env = {} } = {}) {
  const child = track(
    spawn(HUB_BIN, [], {
      env: {
        ...process.env,
        RUST_LOG: "warn",
        ADDR: `127.0.0.1:${port}`,
        JWT_SECRET: HUB_SECRET,
        PUBLIC_TOPICS: "*",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = once(child, "exit");
  const lines = readline.createInterface({ input: child.stdout });
  const listening = new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      const match = /^listening on (http:\/\/\S+)$/.exec(line);
      if (match) resolve(match[1]);
    });
    exited.then(([code]) => reject(new Error(`the hub exited (${code}) before listening: ${stderr}`)));
    child.once("error", reject);
  });
  const base = await withGuard(listening, `${HUB_BIN} prints "listening on"`);
  return {
    base,
    port: Number(new URL(base).port),
    stderr: () => stderr,
    /** SIGTERM (graceful: every stream ends with a `retry:` hint) or SIGKILL (a crash). */
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await withGuard(exited, `the hub exits after ${signal}`);
    },
  };
}

/** Starts a throwaway redis-server on a free port, or returns null when there is none. */
async function startRedis() {
  const port = await freePort();
  const child = track(
    spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  const spawned = await new Promise((resolve) => {
    child.once("spawn", () => resolve(true));
    child.once("error", () => resolve(false));
  });
  if (!spawned) return null;
  const lines = readline.createInterface({ input: child.stdout });
  const ready = new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      if (line.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`redis-server exited (${code})`)));
  });
  await withGuard(ready, "redis-server is ready");
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await withGuard(once(child, "exit"), "redis-server exits");
    },
  };
}

/** Runs a client process to its end; resolves with its exit code and its JSON lines. */
function runClient(label, command, args) {
  const child = track(spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] }));
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const done = new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code: code ?? signal, stdout, stderr }));
  });
  return withGuard(done, `${label} finishes`).catch((err) => {
    child.kill("SIGKILL");
    return { code: String(err.message), stdout, stderr };
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** The hub's JWT_SECRET: every hub this driver starts (restarts included) accepts TOKEN. */
const HUB_SECRET = "tests/interop: the hub's HS256 secret, 32 bytes or more";

/** An HS256 token that may publish, subscribe and list connections, for an hour. */
const TOKEN = (() => {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const rights = { publish: ["*"], subscribe: ["*"], admin: true };
  const head = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sse: rights, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${head}.${createHmac("sha256", HUB_SECRET).update(head).digest("base64url")}`;
})();
const AUTHORIZATION = { authorization: `Bearer ${TOKEN}` };

async function publish(base, topic, data, event) {
  const query = event === undefined ? "" : `?event=${encodeURIComponent(event)}`;
  const response = await fetch(`${base}/publish/${topic}${query}`, {
    method: "POST",
    body: data,
    headers: AUTHORIZATION,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`publish to ${topic} answered ${response.status}: ${text}`);
  return JSON.parse(text).id;
}

async function connections(base, topic) {
  const response = await fetch(`${base}/connections`, { headers: AUTHORIZATION });
  const list = await response.json();
  return list.filter((c) => c.topic === topic);
}

/** Waits until the hub's registry lists `count` streams on `topic`; returns them. */
async function untilConnections(base, topic, count) {
  return withGuard(
    (async () => {
      for (;;) {
        const list = await connections(base, topic);
        if (list.length === count) return list;
        await sleep(20);
      }
    })(),
    `${count} stream(s) open on ${topic} at ${base}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Parsers: both clients read the same events; every case is compared field by field.

const CLIENTS = [
  {
    name: "eventsource",
    run: (url, count) =>
      runClient("the eventsource client", process.execPath, [
        path.join(HERE, "node_client.mjs"),
        url,
        String(count),
        JSON.stringify(EVENT_NAMES),
      ]),
  },
  {
    name: "httpx-sse",
    run: (url, count) =>
      runClient("the httpx-sse client", PYTHON, [path.join(HERE, "python_client.py"), url, String(count)]),
  },
];

/** Where two strings first differ, shown with a little context. */
function firstDifference(gotText, wantText) {
  // By code point, so that an astral character is never cut in half.
  const got = Array.from(gotText);
  const want = Array.from(wantText);
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i += 1;
  const show = (s) => JSON.stringify(s.slice(Math.max(0, i - 10), i + 20).join(""));
  return `data differs at code point ${i} (expected ${want.length} code points, got ${got.length}): expected …${show(want)}…, got …${show(got)}…`;
}

function compare(label, result, expected) {
  const events = [];
  const junk = [];
  for (const line of result.stdout.split("\n")) {
    if (line === "") continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch {
      junk.push(line);
      continue;
    }
    if (!value.open) events.push(value);
  }
  if (result.code !== 0 || junk.length > 0) {
    fail(
      `${label}: the client ran to the end`,
      `exit: ${result.code}`,
      ...junk.map((line) => `unexpected output: ${line.slice(0, 200)}`),
      ...result.stderr.trim().split("\n").slice(-15),
    );
  }
  expected.forEach((want, i) => {
    const got = events[i];
    const name = `${label}: ${want.case}`;
    const wantFields = { type: want.type, data: want.data, lastEventId: want.lastEventId };
    if (got === undefined) {
      fail(name, "never fired", `expected ${JSON.stringify(wantFields).slice(0, 300)}`);
      return;
    }
    const gotFields = { type: got.type, data: got.data, lastEventId: got.lastEventId };
    if (JSON.stringify(gotFields) === JSON.stringify(wantFields)) {
      pass(name);
      return;
    }
    const details = [];
    for (const field of ["type", "data", "lastEventId"]) {
      if (gotFields[field] === wantFields[field]) continue;
      if (field === "data" && typeof gotFields.data === "string") {
        details.push(firstDifference(gotFields.data, wantFields.data));
      } else {
        details.push(`${field}: expected ${JSON.stringify(wantFields[field])}, got ${JSON.stringify(gotFields[field])}`);
      }
    }
    fail(name, ...details);
  });
  if (events.length > expected.length) {
    fail(`${label}: no extra events`, ...events.slice(expected.length).map((e) => `extra: ${JSON.stringify(e).slice(0, 300)}`));
  }
}

async function parsers(backend, hub) {
  const topic = `parse-${backend}`;
  // Published before anyone subscribes: the replay below resumes after it.
  const begin = await publish(hub.base, topic, "begin");

  // Live: both clients subscribed first, then every case is published.
  const url = `${hub.base}/events/${topic}`;
  const running = CLIENTS.map((client) => client.run(url, CASES.length));
  await untilConnections(hub.base, topic, CLIENTS.length);
  const expected = [];
  for (const c of CASES) {
    const id = await publish(hub.base, topic, c.data, c.event);
    expected.push({ case: c.name, type: c.event ?? "message", data: normalize(c.data), lastEventId: id });
  }
  const live = await Promise.all(running);
  CLIENTS.forEach((client, i) => compare(`${backend} live ${client.name}`, live[i], expected));

  // Replay: the same events from history, for a client resuming after `begin`.
  const replayUrl = `${url}?lastEventId=${encodeURIComponent(begin)}`;
  const replay = await Promise.all(CLIENTS.map((client) => client.run(replayUrl, CASES.length)));
  CLIENTS.forEach((client, i) => compare(`${backend} replay ${client.name}`, replay[i], expected));
}

// ---------------------------------------------------------------------------------------------
// Reconnection: the `eventsource` package on its own, across a server restart.

/** An `eventsource` client in this process, with its events, opens and errors queued. */
function watch(url, names) {
  const source = new EventSource(url);
  const log = { events: [], opens: 0, errors: [], source };
  const waiters = [];
  const wake = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  source.onopen = () => {
    log.opens += 1;
    wake();
  };
  source.onerror = (err) => {
    log.errors.push({ message: err.message, code: err.code, readyState: source.readyState });
    wake();
  };
  for (const type of new Set(["message", ...names])) {
    source.addEventListener(type, (event) => {
      log.events.push({ type: event.type, data: event.data, lastEventId: event.lastEventId });
      wake();
    });
  }
  log.until = (what, predicate) =>
    withGuard(
      (async () => {
        while (!predicate(log)) await new Promise((resolve) => waiters.push(resolve));
      })(),
      what,
    );
  return log;
}

async function reconnectMemory() {
  const label = "memory reconnect eventsource";
  const topic = "reconnect";
  const first = await startHub({ env: { KEEP_ALIVE: "1" } });
  const client = watch(`${first.base}/events/${topic}`, ["note", "gap"]);
  let second;
  try {
    await untilConnections(first.base, topic, 1);
    const one = await publish(first.base, topic, "one\r\nline");
    const two = await publish(first.base, topic, "two", "note");
    await client.until("two events before the restart", (log) => log.events.length === 2);
    checkEqual(`${label}: events before the restart`, client.events, [
      { type: "message", data: "one\nline", lastEventId: one },
      { type: "note", data: "two", lastEventId: two },
    ]);

    // A graceful stop ends the stream with a `retry:` hint; the client must keep trying.
    await first.stop("SIGTERM");
    await client.until("an error event once the stream ends", (log) => log.errors.length > 0);
    checkEqual(
      `${label}: the end of the stream is not final (readyState CONNECTING)`,
      client.errors[0].readyState,
      EventSource.CONNECTING,
    );

    // A new server (empty memory) on the same port: the client comes back by itself.
    second = await startHub({ port: first.port, env: { KEEP_ALIVE: "1" } });
    const [conn] = await untilConnections(second.base, topic, 1);
    checkEqual(`${label}: the reconnect sent Last-Event-ID (as the registry saw it)`, conn.last_event_id, two);
    await client.until("the gap event", (log) => log.events.length >= 3);
    const gap = client.events[2];
    let notice = null;
    try {
      notice = JSON.parse(gap.data);
    } catch {
      // Shown by the check below.
    }
    checkEqual(
      `${label}: a gap event names the id it cannot resume from`,
      { type: gap.type, reason: notice?.reason, requested: notice?.requested },
      { type: "gap", reason: "foreign", requested: two },
    );
    const three = await publish(second.base, topic, "three");
    await client.until("a live event after the gap", (log) => log.events.length >= 4);
    checkEqual(`${label}: live events after the gap`, client.events.slice(3), [
      { type: "message", data: "three", lastEventId: three },
    ]);
    checkEqual(`${label}: opened twice`, client.opens, 2);
  } catch (err) {
    fail(`${label}: ${err.message}`, `events: ${JSON.stringify(client.events)}`, `errors: ${JSON.stringify(client.errors)}`);
  } finally {
    client.source.close();
    await first.stop("SIGKILL");
    await second?.stop("SIGKILL");
  }
}

async function reconnectRedis(redisUrl) {
  const label = "redis reconnect eventsource";
  const topic = "reconnect";
  const env = { REDIS_URL: redisUrl, KEEP_ALIVE: "1" };
  // Two hub servers on one Redis: `a` goes away under the client, `b` stays up.
  const a = await startHub({ env });
  const b = await startHub({ env });
  const client = watch(`${a.base}/events/${topic}`, ["note", "gap"]);
  let again;
  try {
    await untilConnections(a.base, topic, 1);
    const ids = [];
    ids.push(await publish(a.base, topic, "one"));
    ids.push(await publish(b.base, topic, "two\rlines", "note")); // fanned out through Redis
    await client.until("two events before the crash", (log) => log.events.length === 2);

    // A crash this time: no `retry:` hint, no clean end; the client retries on its own.
    await a.stop("SIGKILL");
    await client.until("an error event after the crash", (log) => log.errors.length > 0);
    // Published while the client is away.
    ids.push(await publish(b.base, topic, "three"));
    ids.push(await publish(b.base, topic, "four\r\n", "note"));
    again = await startHub({ port: a.port, env });
    const [conn] = await untilConnections(again.base, topic, 1);
    checkEqual(`${label}: the reconnect sent Last-Event-ID (as the registry saw it)`, conn.last_event_id, ids[1]);
    await client.until("the two missed events", (log) => log.events.length >= 4);
    ids.push(await publish(b.base, topic, "five"));
    // Anything extra (a duplicate, a gap event) would come before a last event published now,
    // so the check reads up to that one instead of waiting a while for nothing to happen.
    ids.push(await publish(b.base, topic, "last"));
    await client.until("the last live event", (log) => log.events.some((e) => e.data === "last"));
    checkEqual(`${label}: exactly the missed events, then live, no gap and no duplicate`, client.events, [
      { type: "message", data: "one", lastEventId: ids[0] },
      { type: "note", data: "two\nlines", lastEventId: ids[1] },
      { type: "message", data: "three", lastEventId: ids[2] },
      { type: "note", data: "four\n", lastEventId: ids[3] },
      { type: "message", data: "five", lastEventId: ids[4] },
      { type: "message", data: "last", lastEventId: ids[5] },
    ]);
    checkEqual(`${label}: opened twice`, client.opens, 2);
  } catch (err) {
    fail(`${label}: ${err.message}`, `events: ${JSON.stringify(client.events)}`, `errors: ${JSON.stringify(client.errors)}`);
  } finally {
    client.source.close();
    await a.stop("SIGKILL");
    await b.stop("SIGKILL");
    await again?.stop("SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  // The parser checks use a long keep-alive: httpx-sse (0.4.3) yields an empty event for every
  // keep-alive comment once an id has been seen, which is its own departure from the standard
  // (a blank line with an empty data buffer fires nothing), not something the hub writes.
  const memory = await startHub({ env: { KEEP_ALIVE: "600" } });
  try {
    await parsers("memory", memory);
  } catch (err) {
    fail(`memory parsers: ${err.message}`, ...memory.stderr().trim().split("\n").slice(-10));
  } finally {
    await memory.stop();
  }
  await reconnectMemory();

  let redis = null;
  try {
    redis = await startRedis();
  } catch (err) {
    fail(`redis-server starts: ${err.message}`);
  }
  if (redis === null) {
    const why = "redis-server not found (.ci/run installs redis-server)";
    if (CI) fail(`redis backend: ${why}`);
    else {
      skipped += 1;
      console.log(`skip  redis backend: ${why}`);
    }
  } else {
    try {
      const hub = await startHub({ env: { KEEP_ALIVE: "600", REDIS_URL: redis.url } });
      try {
        await parsers("redis", hub);
      } catch (err) {
        fail(`redis parsers: ${err.message}`, ...hub.stderr().trim().split("\n").slice(-10));
      } finally {
        await hub.stop();
      }
      await reconnectRedis(redis.url);
    } finally {
      await redis.stop();
    }
  }

  console.log(`interop: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((err) => {
  console.log(`FAIL  interop driver: ${err.stack ?? err}`);
  console.log(`interop: ${passed} passed, ${failed + 1} failed`);
  process.exitCode = 1;
});
