// A connection limit as a browser lives it (README: "An EventSource that is told a retry: delay
// and refused with 200 comes back by itself: that is how the connection limits ... answer,
// instead of 429 or 503, which a browser treats as final"). The hub runs with MAX_CONNECTIONS=1;
// a stream from Node holds the one slot; the page's EventSource is refused, stays CONNECTING,
// and once the slot frees it comes back by itself, without any script in the page reconnecting.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import {
  launchBrowser,
  missing,
  openSource,
  publish,
  startExample,
  streamsOn,
  until,
  waitForSse,
} from './support.mjs';

/// Opens a stream from Node and keeps it open; resolves once its 200 head has arrived.
/// `close()` ends it.
function holdStream(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`${url} answered ${res.statusCode}`));
        return;
      }
      res.on('data', () => {});
      req.on('error', () => {}); // the close below
      resolve({ close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

describe('a connection limit in the browser', { skip: missing('chromium') }, () => {
  let browser, hub;

  before(async () => {
    browser = await launchBrowser();
    hub = await startExample('hub', { MAX_CONNECTIONS: '1' });
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  test('an EventSource refused by MAX_CONNECTIONS gets 200 with a retry hint, stays CONNECTING, and comes back by itself once a slot frees', async () => {
    const holder = await holdStream(`${hub.url}/events/hold`);
    await until(async () => (await streamsOn(hub.url, 'hold')).length === 1, {
      what: 'the held stream in /connections',
    });

    // What the refusal is: 200, an event stream, a retry: hint, the end. Asked as an
    // EventSource asks (`Accept: text/event-stream`, refused before the handler runs) and as
    // any other client.
    for (const headers of [{ accept: 'text/event-stream' }, {}]) {
      const refused = await fetch(`${hub.url}/events/x`, { headers });
      assert.equal(refused.status, 200);
      assert.equal(refused.headers.get('content-type'), 'text/event-stream');
      const body = await refused.text();
      const hint = /(?:^|\n)retry: (\d+)\n\n/.exec(body);
      assert.ok(hint, `a retry: hint (${JSON.stringify(headers)}): ${JSON.stringify(body)}`);
      const retry = Number(hint[1]);
      assert.ok(retry >= 5000 && retry <= 15000, `retry ${retry} ms: the default 10 s ±50 %`);
    }

    const context = await browser.newContext();
    const page = await context.newPage();
    const statuses = [];
    page.on('response', (r) => {
      if (r.request().resourceType() === 'eventsource') statuses.push(r.status());
    });
    await page.goto(`${hub.url}/health`);
    await openSource(page, '/events/x');

    // Refused: the stream opened (200) and ended, and the browser is CONNECTING again, not
    // CLOSED as it would be after a 429 or 503.
    await waitForSse(page, (sse) => sse.errors.length >= 1, null, { what: 'the refusal' });
    assert.deepEqual(statuses.slice(0, 1), [200]);
    assert.equal(await page.evaluate(() => window.sse.source.readyState), 0, 'EventSource.CONNECTING');
    assert.equal((await streamsOn(hub.url, 'x')).length, 0, 'the refused stream holds no slot');

    holder.close();
    await until(async () => (await streamsOn(hub.url, 'hold')).length === 0, {
      what: 'the held stream to leave /connections',
    });

    // It comes back by itself after its retry hint (5 to 15 s: a real browser's timer, so the
    // guard is generous), and stays.
    await until(async () => (await streamsOn(hub.url, 'x')).length === 1, {
      timeout: 45_000,
      what: "the browser's own reconnect to be accepted",
    });
    const id = await publish(hub.url, 'x', 'welcome back');
    await waitForSse(page, (sse) => sse.received.some((e) => e.data === 'welcome back'), null, {
      what: 'an event on the stream it came back with',
    });
    const got = await page.evaluate(() => window.sse.received);
    assert.deepEqual(got, [{ type: 'message', data: 'welcome back', lastEventId: id }]);
    assert.equal(await page.evaluate(() => window.sse.source.readyState), 1, 'EventSource.OPEN');
    const errors = await page.evaluate(() => window.sse.errors);
    assert.ok(errors.every((state) => state === 0), `errors only while CONNECTING, never CLOSED: ${errors}`);
    assert.ok(statuses.every((s) => s === 200), `every answer was 200: ${statuses}`);
    await context.close();
  });
});
