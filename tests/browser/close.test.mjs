// The end of a topic, as the browser's own EventSource lives it: `POST /close/{topic}` sends
// every stream a final `end` event and ends it; the browser reconnects by itself with that
// event's id, the hub answers `204 No Content`, and the browser gives up for good. And a first
// connection with `?from=oldest` gets everything retained before the live events.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  authorization,
  launchBrowser,
  missing,
  openSource,
  publish,
  received,
  recordEventSourceRequests,
  startExample,
  streamsOn,
  until,
  waitForSse,
} from './support.mjs';

const message = (data, lastEventId) => ({ type: 'message', data, lastEventId });

/// `POST /close/{topic}`, with a publisher's token; returns the id of the topic's final event.
async function close(base, topic) {
  const res = await fetch(`${base}/close/${encodeURIComponent(topic)}`, { method: 'POST', headers: authorization() });
  const text = await res.text();
  if (!res.ok) throw new Error(`close of ${topic} answered ${res.status}: ${text}`);
  const { id } = JSON.parse(text);
  if (typeof id !== 'string' || !id) throw new Error(`close answered without an id: ${text}`);
  return id;
}

describe('closed topics and ?from=oldest in the browser', { skip: missing('chromium') }, () => {
  let browser, hub;
  const cleanups = [];

  before(async () => {
    browser = await launchBrowser();
    hub = await startExample('hub');
  });

  after(async () => {
    await browser?.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
    await hub?.stop();
  });

  /// A page on the hub's origin with its EventSource requests and responses recorded.
  async function page() {
    const context = await browser.newContext();
    cleanups.push(() => context.close());
    const page = await context.newPage();
    const requests = recordEventSourceRequests(page);
    const responses = [];
    page.on('response', (r) => {
      if (r.request().resourceType() === 'eventsource') responses.push(r);
    });
    await page.goto(`${hub.url}/health`);
    return { page, requests, responses };
  }

  test('POST /close: the page gets the end event, reconnects once with its id, is answered 204 and stays CLOSED', async () => {
    const { page: watcher, requests, responses } = await page();
    await openSource(watcher, '/events/closing', { names: ['end', 'gap'] });
    await waitForSse(watcher, (sse) => sse.opens === 1, null, { what: 'the stream to open' });
    const live = await publish(hub.url, 'closing', 'before the end');
    await waitForSse(watcher, (sse) => sse.received.length === 1, null, { what: 'the live event' });

    const endId = await close(hub.url, 'closing');
    assert.ok(endId.endsWith(':end'), `the final event's id ends in ":end": ${endId}`);
    await waitForSse(watcher, (sse) => sse.received.length === 2, null, { what: 'the end event' });
    assert.deepEqual(await received(watcher), [
      message('before the end', live),
      { type: 'end', data: '{"reason":"closed"}', lastEventId: endId },
    ]);

    // The stream ended (no retry hint: Chromium waits its default 3 s), the browser reconnected
    // by itself with the end's id, was answered 204 and failed the connection for good.
    await waitForSse(watcher, (sse) => sse.source.readyState === 2, null, {
      what: 'EventSource.CLOSED after the reconnect',
    });
    assert.equal(requests.length, 2, 'the stream, then exactly one reconnect');
    await requests[1].headersReady;
    assert.equal(requests[1].url, `${hub.url}/events/closing`);
    assert.equal(requests[1].headers['last-event-id'], endId, 'the reconnect sent the end event\'s id');
    await until(() => responses.length === 2, { what: 'the response to the reconnect' });
    assert.equal(responses[0].status(), 200);
    assert.equal(responses[1].status(), 204, 'the hub answered the reconnect 204 No Content');
    const seen = await watcher.evaluate(() => ({ opens: window.sse.opens, errors: window.sse.errors }));
    assert.equal(seen.opens, 1, 'the 204 never opened a stream');
    assert.deepEqual(seen.errors, [0, 2], 'one error while reconnecting (CONNECTING), one final (CLOSED)');

    // It stays closed. Barrier: a second page, opened only now, on a topic of its own, receives
    // a published event, and then goes through the same close cycle (end event, the browser's
    // default reconnect delay, 204, CLOSED). When it is CLOSED, a retry of the first page after
    // that same delay, counted from before the barrier started, would have been recorded.
    const { page: barrier, requests: barrierRequests } = await page();
    await openSource(barrier, '/events/closing-barrier', { names: ['end'] });
    await waitForSse(barrier, (sse) => sse.opens === 1, null, { what: 'the barrier stream to open' });
    const barrierEvent = await publish(hub.url, 'closing-barrier', 'barrier');
    await waitForSse(barrier, (sse) => sse.received.length === 1, null, { what: 'the barrier event' });
    assert.deepEqual(await received(barrier), [message('barrier', barrierEvent)]);
    const barrierEnd = await close(hub.url, 'closing-barrier');
    await waitForSse(barrier, (sse) => sse.source.readyState === 2, null, {
      what: 'the barrier page to be CLOSED too',
    });
    assert.equal(barrierRequests.length, 2);
    await barrierRequests[1].headersReady;
    assert.equal(barrierRequests[1].headers['last-event-id'], barrierEnd);

    assert.equal(requests.length, 2, 'no request after the 204');
    assert.equal(responses.length, 2);
    const after = await watcher.evaluate(() => ({
      readyState: window.sse.source.readyState,
      opens: window.sse.opens,
      errors: window.sse.errors,
      received: window.sse.received.length,
    }));
    assert.deepEqual(after, { readyState: 2, opens: 1, errors: [0, 2], received: 2 }, 'still CLOSED, nothing new');
    // And on the hub's side: no stream left on either topic.
    assert.deepEqual(await streamsOn(hub.url, 'closing'), []);
    assert.deepEqual(await streamsOn(hub.url, 'closing-barrier'), []);
  });

  test('?from=oldest: a first connection gets the three retained events in order with their ids, then live ones', async () => {
    const ids = [];
    for (const data of ['o1', 'o2', 'o3']) ids.push(await publish(hub.url, 'oldest', data));

    const { page: late, requests } = await page();
    await openSource(late, '/events/oldest?from=oldest', { names: ['gap', 'end'] });
    await waitForSse(late, (sse) => sse.opens === 1 && sse.received.length >= 3, null, {
      what: 'the retained events',
    });
    assert.deepEqual(
      await received(late),
      ['o1', 'o2', 'o3'].map((data, i) => message(data, ids[i])),
      'everything retained, in order, with its ids',
    );
    assert.equal(requests.length, 1);
    await requests[0].headersReady;
    assert.equal(requests[0].headers['last-event-id'], undefined, 'a first connection, not a resume');

    ids.push(await publish(hub.url, 'oldest', 'o4'));
    await waitForSse(late, (sse) => sse.received.length >= 4, null, { what: 'the live event' });
    assert.deepEqual(
      await received(late),
      ['o1', 'o2', 'o3', 'o4'].map((data, i) => message(data, ids[i])),
      'then the live event, no duplicate',
    );
    assert.equal(await late.evaluate(() => window.sse.source.readyState), 1, 'EventSource.OPEN');
  });
});
