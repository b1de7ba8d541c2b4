// The hub server's admin page (`/admin`, examples/hub/admin.rs), as an operator opens it: the
// URL the server prints carries an admin token in its query; the page moves it into an
// HttpOnly cookie and out of the address bar, then shows the hub live over its own event
// stream: a subscriber's connection, a topic with its retained events and publish counts.
// Without a token, the page is refused. A screenshot is saved as target/browser/admin.png.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { TARGET_DIR, launchBrowser, missing, startExample, until } from './support.mjs';

const SECRET = 'tests/browser/admin.test.mjs: a secret of 32 bytes or more';
const TOPIC = 'orders';
/// A client-controlled string the page shows (as the peer's tooltip): never as markup.
const HOSTILE_AGENT = '<img src=x onerror="window.pwned=1"> "quoted" & more';

const base64url = (value) => Buffer.from(value).toString('base64url');

/// An HS256 token for `sse` claims, valid for an hour.
function sign(sse) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = base64url(JSON.stringify({ sse, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const signature = crypto.createHmac('sha256', SECRET).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

const ADMIN = sign({ admin: true, publish: ['*'], subscribe: ['*'] });
const USER = sign({ publish: ['*'], subscribe: ['*'] });

async function publish(base, topic, data) {
  const res = await fetch(`${base}/publish/${topic}`, {
    method: 'POST',
    body: data,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'text/plain; charset=utf-8' },
  });
  const text = await res.text();
  assert.equal(res.status, 200, `publish answered ${res.status}: ${text}`);
}

/// A subscriber outside the browser, with a hostile User-Agent; `close()` ends it.
async function subscriber(base, topic) {
  const abort = new AbortController();
  const res = await fetch(`${base}/events/${topic}`, {
    headers: { authorization: `Bearer ${USER}`, accept: 'text/event-stream', 'user-agent': HOSTILE_AGENT },
    signal: abort.signal,
  });
  assert.equal(res.status, 200, `subscribe answered ${res.status}`);
  // Keep reading, so the stream flows; its end (when aborted) is expected.
  const reader = res.body.getReader();
  (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {}
  })();
  return { close: () => abort.abort() };
}

/// The rows of a table of the page, as arrays of cell texts (and the peer's tooltip).
const rows = (page, table) =>
  page.$$eval(`#${table} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.cells].map((td) => (td.title ? { text: td.textContent, title: td.title } : td.textContent))),
  );

describe('the hub admin page in the browser', { skip: missing('chromium') }, () => {
  let browser, hub;

  before(async () => {
    browser = await launchBrowser();
    hub = await startExample('hub', { JWT_SECRET: SECRET });
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  test('the admin URL moves its token into an HttpOnly cookie, and the page shows the hub live', async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
    const documents = [];
    page.on('response', (r) => {
      if (r.request().resourceType() === 'document') documents.push({ url: r.url(), status: r.status() });
    });

    const response = await page.goto(`${hub.url}/admin?authorization=${ADMIN}`);
    assert.equal(response.status(), 200);
    assert.equal(page.url(), `${hub.url}/admin`, 'the token left the address bar');
    assert.deepEqual(
      documents.map((d) => d.status),
      [303, 200],
      `a redirect, then the page: ${JSON.stringify(documents)}`,
    );
    const history = await (await context.newCDPSession(page)).send('Page.getNavigationHistory');
    for (const entry of history.entries) {
      assert.ok(!entry.url.includes('authorization'), `no token in the history: ${entry.url}`);
    }
    const [cookie] = (await context.cookies(`${hub.url}/admin`)).filter((c) => c.name === 'sse_token');
    assert.ok(cookie, 'the cookie is set');
    assert.equal(cookie.value, ADMIN);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/admin');
    assert.ok(cookie.expires > Date.now() / 1000, 'a persistent cookie, until the token expires');
    assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read it');

    // The page's own stream opened with the cookie.
    await page.waitForFunction(() => document.querySelector('#state').textContent === 'connected', null, {
      timeout: 15_000,
      polling: 20,
    });

    // A subscriber and a few publishes, then wait for the page to show them.
    const sub = await subscriber(hub.url, TOPIC);
    for (let n = 0; n < 3; n++) await publish(hub.url, TOPIC, `order ${n}`);
    let topics = [];
    await until(async () => {
      topics = await rows(page, 'topics');
      // topic, subscribers, retained, retained bytes, rate, published, state
      return topics.some((r) => r[0] === TOPIC && r[1] === '1' && r[2] === '3' && r[5] === '3' && r[6] === 'open');
    }, { what: `the topic ${TOPIC} with 1 subscriber and 3 events, in ${JSON.stringify(topics)}` });
    const connections = await rows(page, 'connections');
    const row = connections.find((r) => r[2] === TOPIC);
    assert.ok(row, `a connection on ${TOPIC}: ${JSON.stringify(connections)}`);
    assert.match(row[1].text, /^127\.0\.0\.1:\d+$/, 'the peer');
    assert.equal(row[1].title, HOSTILE_AGENT, 'the user agent, as text');
    assert.ok(
      connections.some((r) => r[2] === '/admin/events'),
      "the page's own stream is listed",
    );
    assert.equal(await page.evaluate(() => window.pwned), undefined, 'nothing client-sent ran');
    assert.equal(await page.locator('#connections img').count(), 0);
    assert.equal(await page.locator('#backend').textContent(), 'backend: ok');
    assert.notEqual(await page.locator('#updated').textContent(), 'never');

    // The page goes on updating: the subscriber leaves and is counted as gone.
    sub.close();
    await page.waitForFunction(
      (topic) =>
        Number(document.querySelector('[data-counter=client_gone]').textContent) >= 1 &&
        ![...document.querySelectorAll('#connections tbody tr')].some((tr) => tr.cells[2]?.textContent === topic),
      TOPIC,
      { timeout: 15_000, polling: 20 },
    );
    // And shows the topic still, with what it retains.
    await publish(hub.url, TOPIC, 'order 3');
    await until(async () => (await rows(page, 'topics')).some((r) => r[0] === TOPIC && r[2] === '4'), {
      what: 'the fourth event counted',
    });

    assert.deepEqual(errors, [], 'no script errors, no CSP violations');
    const dir = path.join(TARGET_DIR, 'browser');
    fs.mkdirSync(dir, { recursive: true });
    // A second subscriber, so the screenshot shows a connection row for the topic.
    const again = await subscriber(hub.url, TOPIC);
    await until(async () => (await rows(page, 'connections')).some((r) => r[2] === TOPIC), {
      what: 'the second subscriber listed',
    });
    await publish(hub.url, TOPIC, 'order 4');
    // connection: id, peer, topic, label, age, events, …
    await until(async () => (await rows(page, 'connections')).some((r) => r[2] === TOPIC && r[5] === '1'), {
      what: 'the event sent to the second subscriber counted',
    });
    await page.screenshot({ path: path.join(dir, 'admin.png'), fullPage: true });
    again.close();
    await context.close();
  });

  test('without an admin token the page and its stream are refused', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const response = await page.goto(`${hub.url}/admin`);
    assert.equal(response.status(), 401);
    assert.equal(response.headers()['cache-control'], 'no-store');

    // A token without admin rights, in the query: refused, and no cookie is left behind.
    const forbidden = await page.goto(`${hub.url}/admin?authorization=${USER}`);
    assert.equal(forbidden.status(), 403);
    assert.deepEqual((await context.cookies(`${hub.url}/admin`)).filter((c) => c.name === 'sse_token'), []);

    const events = await fetch(`${hub.url}/admin/events`, { headers: { accept: 'text/event-stream' } });
    assert.equal(events.status, 401);
    await events.body?.cancel();
    await context.close();
  });
});
