// The browser's own reconnection: after the server is killed and restarted on the same port,
// after a graceful shutdown's `retry:` hint. Nothing here reconnects for the browser: the page
// opens one EventSource and the test only watches it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  launchBrowser,
  missing,
  openSource,
  publish,
  received,
  recordEventSourceRequests,
  recordStreams,
  startExample,
  startRedis,
  until,
  waitForSse,
} from './support.mjs';

const message = (data, lastEventId) => ({ type: 'message', data, lastEventId });

describe('the browser reconnects by itself', { skip: missing('chromium') }, () => {
  let browser;
  const cleanups = [];

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /// A hub server whose process is stopped at the end of the file, whatever happened.
  async function hub(env) {
    const server = await startExample('hub', env);
    cleanups.push(() => server.stop());
    return server;
  }

  /// A page on `server`'s origin with its EventSource requests recorded.
  async function pageOn(server) {
    const context = await browser.newContext();
    cleanups.push(() => context.close());
    const page = await context.newPage();
    const requests = recordEventSourceRequests(page);
    await page.goto(`${server.url}/health`);
    return { page, requests };
  }

  test('memory backend: killed and restarted mid-stream, the browser reconnects with its last id and gets the gap event first, then live events', async () => {
    const first = await hub();
    const { page, requests } = await pageOn(first);
    await openSource(page, '/events/k', { names: ['gap'] });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the stream to open' });
    const ids = [];
    for (const data of ['m1', 'm2', 'm3']) ids.push(await publish(first.url, 'k', data));
    await waitForSse(page, (sse) => sse.received.length === 3, null, { what: '3 events' });

    const killed = await first.stop('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    const restarted = await hub({ ADDR: `127.0.0.1:${first.port}` });

    // No retry hint was sent, so Chromium waits its default (3 s) before reconnecting.
    await waitForSse(page, (sse) => sse.opens === 2 && sse.received.length >= 4, null, {
      what: 'the reconnect and the gap event',
    });
    const later = await publish(restarted.url, 'k', 'm4');
    await waitForSse(page, (sse) => sse.received.length >= 5, null, { what: 'the live event' });

    assert.equal(requests.length, 2, 'one stream, one reconnect');
    await requests[1].headersReady;
    assert.equal(requests[1].headers['last-event-id'], ids[2], 'the browser sent its last id');
    const got = await received(page);
    assert.equal(got.length, 5);
    assert.deepEqual(got.slice(0, 3), [message('m1', ids[0]), message('m2', ids[1]), message('m3', ids[2])]);
    assert.equal(got[3].type, 'gap', 'the first event after the restart is the gap event');
    const gap = JSON.parse(got[3].data);
    assert.equal(gap.reason, 'foreign');
    assert.equal(gap.requested, ids[2]);
    assert.equal(got[3].lastEventId, gap.resume_after);
    assert.deepEqual(got[4], message('m4', later));
  });

  test('Redis backend: killed and restarted mid-stream, the browser reconnects with its last id and gets exactly the events it missed, then live ones', { skip: missing('redis-server') }, async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const a = await hub({ REDIS_URL: redis.url });
    const b = await hub({ REDIS_URL: redis.url }); // publishes while `a` is down
    const { page, requests } = await pageOn(a);
    await openSource(page, '/events/r', { names: ['gap'] });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the stream to open' });
    const ids = [];
    for (const data of ['r1', 'r2', 'r3']) ids.push(await publish(a.url, 'r', data));
    await waitForSse(page, (sse) => sse.received.length === 3, null, { what: '3 events' });

    await a.stop('SIGKILL');
    // Published while the browser's server is down: the browser must get exactly these.
    for (const data of ['r4', 'r5']) ids.push(await publish(b.url, 'r', data));
    await hub({ ADDR: `127.0.0.1:${a.port}`, REDIS_URL: redis.url });

    await waitForSse(page, (sse) => sse.opens === 2 && sse.received.length >= 5, null, {
      what: 'the reconnect and the 2 missed events',
    });
    ids.push(await publish(b.url, 'r', 'r6')); // live, through the other server
    await waitForSse(page, (sse) => sse.received.length >= 6, null, { what: 'the live event' });

    assert.equal(requests.length, 2, 'one stream, one reconnect');
    await requests[1].headersReady;
    assert.equal(requests[1].headers['last-event-id'], ids[2], 'the browser sent its last id');
    assert.deepEqual(
      await received(page),
      ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'].map((data, i) => message(data, ids[i])),
      'exactly the missed events, in order, no gap event, no duplicate',
    );
  });

  test('graceful shutdown: the browser honours the retry hint, reconnects to the restarted server, and events flow again', async (t) => {
    const first = await hub();
    const { page, requests } = await pageOn(first);
    const streams = await recordStreams(page);
    await openSource(page, '/events/g', { names: ['gap'] });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the stream to open' });
    const before = await publish(first.url, 'g', 'before');
    await waitForSse(page, (sse) => sse.received.length === 1, null, { what: 'the event' });

    // No bound on the clock: the example has no shutdown deadline, so with this stream open it
    // exits only once the layer has ended the stream, and the stream must end with the retry
    // hint (checked below), which a cut by a deadline would not send.
    const stopped = await first.stop('SIGTERM');
    assert.equal(stopped.code, 0, `a graceful exit:\n${first.output}`);
    t.diagnostic(`the graceful shutdown took ${stopped.ms.toFixed(0)} ms with a stream open`);
    const restarted = await hub({ ADDR: `127.0.0.1:${first.port}` });

    await waitForSse(page, (sse) => sse.opens === 2, null, { what: 'the browser to reconnect' });
    await until(() => streams.length === 2 && streams[0].endedAt !== null, {
      what: 'both streams seen through CDP',
    });
    const [ended, resumed] = streams;
    assert.equal(ended.streamError, undefined, 'CDP streamed the response');
    const hint = /\n\nretry: (\d+)\n\n$/.exec(ended.bytes);
    assert.ok(hint, `the stream ended with a retry hint after a complete event: ${JSON.stringify(ended.bytes)}`);
    const retry = Number(hint[1]);
    assert.ok(retry >= 1000 && retry <= 3000, `retry ${retry} ms is ~2 s ±50 %`);
    const waited = (resumed.sentAt - ended.endedAt) * 1000;
    t.diagnostic(`retry hint ${retry} ms; the browser reconnected after ${waited.toFixed(0)} ms`);
    // Wall-clock bounds, because the delay is the browser's own timer: neither paused time nor
    // a signal reaches into Chromium. Not before the hint (less 100 ms for the two CDP
    // timestamps), and within a second after it: generous for a loaded machine, while a browser
    // that ignored a hint under 2 s would wait its own default (3 s) and fail here.
    assert.ok(
      waited >= retry - 100 && waited <= retry + 1000,
      `the browser reconnected ${waited.toFixed(0)} ms after the stream ended; the hint said ${retry} ms`,
    );

    // It did not give up: the error it saw was a reconnecting one, it is OPEN again, and
    // events flow (after the gap event: this in-memory server's history is new).
    const errors = await page.evaluate(() => window.sse.errors);
    assert.ok(errors.length >= 1 && errors.every((state) => state === 0), `errors only while CONNECTING, never CLOSED: ${errors}`);
    assert.equal(await page.evaluate(() => window.sse.source.readyState), 1, 'EventSource.OPEN');
    await requests[1].headersReady;
    assert.equal(requests[1].headers['last-event-id'], before);
    const afterRestart = await publish(restarted.url, 'g', 'after');
    await waitForSse(page, (sse) => sse.received.at(-1)?.data === 'after', null, {
      what: 'an event after the restart',
    });
    const got = await received(page);
    assert.deepEqual(got[0], message('before', before));
    assert.deepEqual(got.map((e) => e.type), ['message', 'gap', 'message']);
    assert.deepEqual(got[2], message('after', afterRestart));
  });
});
