// `examples/proxy.rs` in a real browser: the page streams the demo upstream through the proxy,
// applies the `patch` events with its own few lines of JavaScript, and the board it renders is
// exactly the upstream's JSON after many changes; a `snapshot` in the middle of the stream
// replaces the page's state; an upstream the allowlist refuses is shown as refused, with the
// proxy's reason. A screenshot is saved as
// target/browser-screenshots/proxy.png.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, missing, screenshot, startExample } from './support.mjs';

/// A value as the page's cells show it.
const cell = (value) => (value !== null && typeof value === 'object' ? JSON.stringify(value) : String(value));

/// What the page shows: its state badge, counters, the JSON it holds and its table.
const shown = (page) =>
  page.evaluate(() => {
    const number = (id) => Number(document.querySelector(`#${id}`).textContent.replace(/,/g, ''));
    const json = document.querySelector('#json').textContent;
    return {
      state: document.querySelector('#state').dataset.state,
      notice: document.querySelector('#notice').textContent,
      snapshots: number('snapshots'),
      patches: number('patches'),
      operations: number('operations'),
      doc: json ? JSON.parse(json) : null,
      headers: [...document.querySelectorAll('#board thead th')].map((th) => th.textContent),
      rows: [...document.querySelectorAll('#board tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)),
      fields: Object.fromEntries([...document.querySelectorAll('#fields dd')].map((dd) => [dd.dataset.field, dd.textContent])),
    };
  });

describe('proxy example: a JSON API streamed as patches, in the browser', { skip: missing('chromium') }, () => {
  let browser, server;

  before(async () => {
    browser = await launchBrowser();
    server = await startExample('proxy', { MIN_INTERVAL_MS: '50', DEMO_TICK_MS: '300' });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the rendered board equals the upstream JSON after changes', async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') errors.push(msg.text());
    });
    const response = await page.goto(`${server.url}/?interval_ms=50`);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|https?:/, 'no inline code, nothing from elsewhere');

    // Several changes arrive as patches, applied in the page.
    await page.waitForFunction(
      () => Number(document.querySelector('#patches').textContent.replace(/,/g, '')) >= 5,
      null,
      { timeout: 15_000, polling: 50 },
    );

    // The upstream changes every 300 ms; the page follows within a poll (50 ms). Take the
    // upstream's answer and the page at the same version.
    let upstream, seen;
    for (let attempt = 0; attempt < 20; attempt++) {
      upstream = await (await fetch(`${server.url}/demo/departures`)).json();
      await page
        .waitForFunction((v) => JSON.parse(document.querySelector('#json').textContent || 'null')?.version >= v, upstream.version, {
          timeout: 5_000,
          polling: 10,
        })
        .catch(() => {});
      seen = await shown(page);
      if (seen.doc?.version === upstream.version) break;
    }
    assert.equal(seen.doc?.version, upstream.version, 'the page caught up with the upstream');
    assert.equal(seen.state, 'live');
    assert.equal(seen.snapshots, 1, 'one snapshot, then patches only');
    assert.ok(seen.patches >= 5 && seen.operations >= seen.patches, JSON.stringify(seen.patches));

    // The JSON the page holds, and the board it renders, are the upstream's.
    assert.deepEqual(seen.doc, upstream);
    const rows = upstream.departures;
    assert.deepEqual(new Set(seen.headers), new Set(Object.keys(rows[0])));
    assert.equal(seen.rows.length, rows.length);
    seen.rows.forEach((cells, i) => {
      assert.deepEqual(cells, seen.headers.map((name) => cell(rows[i][name])), `row ${i}`);
    });
    assert.equal(seen.fields.now, upstream.now);
    assert.deepEqual(errors, [], 'no script errors, no CSP violations');
    await screenshot(page, 'proxy');
    await context.close();
  });

  test('a snapshot in the middle of the stream replaces the state', async () => {
    // The proxy sends the value whole where a patch would be no smaller, or after a change it
    // could not confirm was sent: the page must take it as its new state, and go on patching it.
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') errors.push(msg.text());
    });
    await page.goto(`${server.url}/?interval_ms=50`);
    const patches = () => page.evaluate(() => Number(document.querySelector('#patches').textContent.replace(/,/g, '')));
    await page.waitForFunction(() => Number(document.querySelector('#patches').textContent.replace(/,/g, '')) >= 1, null, {
      timeout: 15_000,
      polling: 50,
    });
    // A value the page has never seen: the one it holds, with one more field.
    await page.evaluate(() => {
      const doc = JSON.parse(document.querySelector('#json').textContent);
      doc.note = 'sent whole';
      source.dispatchEvent(new MessageEvent('snapshot', { data: JSON.stringify(doc) }));
    });
    let seen = await shown(page);
    assert.equal(seen.snapshots, 2);
    assert.equal(seen.fields.note, 'sent whole', 'the page shows the new value');
    assert.equal(seen.doc.note, 'sent whole');

    // The patches that follow apply to it.
    const before = await patches();
    await page.waitForFunction((n) => Number(document.querySelector('#patches').textContent.replace(/,/g, '')) >= n, before + 3, {
      timeout: 15_000,
      polling: 50,
    });
    seen = await shown(page);
    assert.equal(seen.state, 'live');
    assert.equal(seen.snapshots, 2, 'no fresh start: every patch applied');
    assert.equal(seen.doc.note, 'sent whole');
    assert.deepEqual(errors, [], 'no script errors');
    await context.close();
  });

  test('an upstream outside the allowlist is refused, with the reason on the page', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const trick = `http://127.0.0.1:${server.port}@evil.example/demo/departures`;
    await page.goto(`${server.url}/?url=${encodeURIComponent(trick)}`);
    await page.waitForFunction(() => document.querySelector('#state').dataset.state === 'refused', null, {
      timeout: 15_000,
      polling: 50,
    });
    await page.waitForFunction(() => document.querySelector('#notice').textContent !== '', null, {
      timeout: 15_000,
      polling: 50,
    });
    const seen = await shown(page);
    assert.match(seen.notice, /^400: upstream refused: /);
    assert.equal(seen.doc, null, 'nothing was streamed');
    await context.close();
  });
});
