// Compressed event streams in a real browser: the layer's shared compression
// (`Compression::shared`: each event compressed once for all its streams, a stream of
// independently compressed pieces) is read by Chromium's own gzip, zstd and Brotli decoders,
// each event as soon as it is published. The compression example
// (`cargo build --examples --features compression`) serves one encoding at a time (ENCODINGS),
// so each is the one Chromium gets, whatever it accepts.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  launchBrowser,
  missing,
  openSource,
  received,
  startExample,
  waitForSse,
} from './support.mjs';

/// An order of some line items, about a kilobyte of JSON, different for each `n`.
function order(n) {
  const items = Array.from({ length: 12 }, (_, i) => ({
    sku: `SKU-${String((n * 7919 + i * 104729) % 100000).padStart(5, '0')}`,
    qty: 1 + ((n + i) % 9),
    note: ['standard', 'express', 'gift', 'bulk'][(n * i) % 4],
  }));
  return JSON.stringify({ seq: n, order: `ord_${n.toString(16).padStart(12, '0')}`, items });
}

async function publish(base, data) {
  const res = await fetch(`${base}/orders`, { method: 'POST', body: data });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST /orders answered ${res.status}: ${text}`);
  return JSON.parse(text).id;
}

for (const encoding of ['gzip', 'zstd', 'br']) {
  describe(`shared ${encoding} compression`, { skip: missing('chromium') }, () => {
    let browser, server, page;
    const encodings = [];

    before(async () => {
      browser = await launchBrowser();
      server = await startExample('compression', {
        COMPRESSION: 'shared',
        ENCODINGS: encoding,
        FEED_MS: '0',
      });
      page = await browser.newPage();
      page.on('response', (response) => {
        if (new URL(response.url()).pathname === '/events') {
          encodings.push(response.headers()['content-encoding']);
        }
      });
      // The example's page opens a stream of its own: two streams share each event.
      await page.goto(`${server.url}/`);
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
    });

    test(`EventSource reads each event of a shared ${encoding} stream as it is published`, async () => {
      await openSource(page, '/events');
      await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the stream to open' });

      const expected = [];
      for (let n = 0; n < 12; n++) {
        const data = order(n);
        const id = await publish(server.url, data);
        expected.push({ type: 'message', data, lastEventId: id });
        // Read before the next is published: nothing waits for more bytes to decode.
        await waitForSse(page, (sse, count) => sse.received.length >= count, expected.length, {
          what: `event ${n}`,
        });
      }
      assert.deepEqual(await received(page), expected);
      const errors = await page.evaluate(() => window.sse.errors);
      assert.deepEqual(errors, [], 'no decoding error, no reconnect');
      // The test's stream and the page's own, both compressed as asked.
      assert.deepEqual(encodings, [encoding, encoding]);
      // The page's own stream is another connection, read by the page's own handler: it shows
      // the last order on its own time (once, in CI, it was two events behind when the test's
      // stream had them all). Nothing more is published, so a stream that held an event back
      // until more bytes came would never show it.
      const shows = () => document.getElementById('log').textContent.includes('"seq":11');
      await page.waitForFunction(shows, null, { timeout: 10000 }).catch(() => {});
      const shown = await page.evaluate(() => document.getElementById('log').textContent);
      assert.ok(shown.includes(`"seq":11`), `the page's own stream showed the orders: ${shown.slice(0, 200)}`);
    });
  });
}
