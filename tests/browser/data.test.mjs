// What a browser's EventSource receives is exactly what was published (after the WHATWG
// parser's own line-ending normalisation), including named events.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  launchBrowser,
  missing,
  openSource,
  publish,
  received,
  startExample,
  waitForSse,
} from './support.mjs';

// 64 KiB of varied ASCII, so a dropped or repeated chunk cannot go unnoticed.
const BIG = Array.from({ length: 65536 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 94))).join('');

// [what is published, what the page must receive]
const CASES = [
  ['plain', 'hello'],
  ['LF', 'a\nb'],
  ['CR', 'a\rb', 'a\nb'],
  ['CRLF', 'a\r\nb', 'a\nb'],
  ['mixed line endings and blank lines', 'one\r\rtwo\n\nthree\r\n\r\nfour', 'one\n\ntwo\n\nthree\n\nfour'],
  ['a trailing LF', 'end\n'],
  ['a leading space', ' x'],
  ['a leading colon', ':not a comment'],
  ['empty data', ''],
  ['non-ASCII text', 'Grüße 👋 日本'],
  ['a 64 KiB payload', BIG],
];

describe('data arrives exactly as published', { skip: missing('chromium') }, () => {
  let browser, hub, page;

  before(async () => {
    browser = await launchBrowser();
    hub = await startExample('hub');
    page = await browser.newPage();
    // Any page of the hub's origin will do: the stream is then same-origin.
    await page.goto(`${hub.url}/health`);
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  test('CR, LF, CRLF, a leading space, empty data, non-ASCII text and a 64 KiB payload arrive as published, CR and CRLF as LF', async () => {
    await openSource(page, '/events/data', { names: ['price'] });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the stream to open' });

    const expected = [];
    for (const [, data, arrives = data] of CASES) {
      const id = await publish(hub.url, 'data', data);
      expected.push({ type: 'message', data: arrives, lastEventId: id });
    }
    await waitForSse(page, (sse, n) => sse.received.length >= n, expected.length, {
      what: `${expected.length} events`,
    });
    const got = await received(page);
    assert.equal(got.length, expected.length, 'no event more, none less');
    for (const [i, [name]] of CASES.entries()) {
      assert.deepEqual(got[i], expected[i], `${name}: the page received something else`);
    }
  });

  test('a named event reaches addEventListener(NAME), not onmessage, with its id', async () => {
    await page.evaluate(() => window.sse.source.close());
    await openSource(page, '/events/named', { names: ['price', 'alert'] });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the stream to open' });

    const price = await publish(hub.url, 'named', '{"symbol":"ACME","p":101.5}', 'price');
    const plain = await publish(hub.url, 'named', 'unnamed');
    const alert = await publish(hub.url, 'named', 'Grüße\r\nline 2', 'alert');
    await waitForSse(page, (sse) => sse.received.length >= 3, null, { what: '3 events' });
    assert.deepEqual(await received(page), [
      { type: 'price', data: '{"symbol":"ACME","p":101.5}', lastEventId: price },
      { type: 'message', data: 'unnamed', lastEventId: plain },
      { type: 'alert', data: 'Grüße\nline 2', lastEventId: alert },
    ]);
  });
});
