// Cross-origin streams with credentials, as the browser enforces them: a page on another
// origin that the hub lists receives events with its cookie sent; one it does not list is
// refused by the browser itself.
//
// The two page origins are http://127.0.0.1:<port> of small Node servers, the hub is
// http://127.0.0.1:<its port>: different origins (so CORS applies), the same site (so a
// SameSite=Lax cookie for 127.0.0.1 goes with the request). A listed origin also reads a
// private topic with the hub's `sse_token` cookie and publishes with the token.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  authorization,
  hubToken,
  launchBrowser,
  missing,
  openSource,
  pageServer,
  publish,
  received,
  recordEventSourceRequests,
  startExample,
  until,
  waitForSse,
} from './support.mjs';

describe('cross-origin EventSource with credentials', { skip: missing('chromium') }, () => {
  let browser, hub, allowed, unlisted;

  before(async () => {
    browser = await launchBrowser();
    allowed = await pageServer();
    unlisted = await pageServer();
    // `cors` is public; every other topic needs a token.
    hub = await startExample('hub', { ALLOW_ORIGINS: allowed.origin, PUBLIC_TOPICS: 'cors' });
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
    await allowed?.stop();
    await unlisted?.stop();
  });

  test('a listed origin receives events and its cookie is sent; an unlisted origin is refused by the browser', async () => {
    const context = await browser.newContext();
    await context.addCookies([
      { name: 'session', value: 'alice-7f3a', url: hub.url, sameSite: 'Lax' },
    ]);

    // The listed origin.
    const page = await context.newPage();
    const requests = recordEventSourceRequests(page);
    const responses = [];
    page.on('response', (r) => {
      if (r.request().resourceType() === 'eventsource') responses.push(r);
    });
    await page.goto(`${allowed.origin}/`);
    await openSource(page, `${hub.url}/events/cors`, { withCredentials: true });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the cross-origin stream to open' });

    // The unlisted origin, in the same browser context (same cookie), same topic.
    const refused = await context.newPage();
    const refusedRequests = recordEventSourceRequests(refused);
    await refused.goto(`${unlisted.origin}/`);
    await openSource(refused, `${hub.url}/events/cors`, { withCredentials: true });
    await waitForSse(refused, (sse) => sse.errors.length >= 1, null, {
      what: 'the unlisted origin to get an error',
    });

    const id = await publish(hub.url, 'cors', 'for listed origins only');
    await waitForSse(page, (sse) => sse.received.length >= 1, null, { what: 'the event' });
    assert.deepEqual(await received(page), [
      { type: 'message', data: 'for listed origins only', lastEventId: id },
    ]);

    // What the listed page sent and got back.
    assert.equal(requests.length, 1);
    await requests[0].headersReady;
    assert.equal(requests[0].headers.origin, allowed.origin);
    assert.match(requests[0].headers.cookie ?? '', /(^|; )session=alice-7f3a(;|$)/, 'the cookie is sent');
    assert.equal(await page.evaluate(() => window.sse.source.withCredentials), true);
    assert.equal(responses.length, 1);
    const headers = await responses[0].allHeaders();
    assert.equal(responses[0].status(), 200);
    assert.equal(headers['access-control-allow-origin'], allowed.origin);
    assert.equal(headers['access-control-allow-credentials'], 'true');
    assert.match(headers['content-type'], /^text\/event-stream/);

    // The unlisted page: the browser failed the connection for good, and the event published
    // after that (which the listed page has received by now) never reached it.
    // (Chromium reports only provisional headers for a request it failed, so its Origin is
    // checked below by asking the hub directly.)
    assert.equal(refusedRequests[0]?.url, `${hub.url}/events/cors`);
    const state = await refused.evaluate(() => ({
      readyState: window.sse.source.readyState,
      opens: window.sse.opens,
      received: window.sse.received,
      errors: window.sse.errors,
    }));
    assert.equal(state.opens, 0, 'the refused stream never opened');
    assert.deepEqual(state.received, [], 'the refused page received nothing');
    assert.equal(state.readyState, 2, 'EventSource.CLOSED: a CORS failure is final');
    assert.deepEqual(state.errors, [2]);
    assert.equal(refusedRequests.length, 1, 'the browser did not retry');

    // What the browser was answered: no Access-Control-Allow-Origin for that origin.
    const direct = await fetch(`${hub.url}/events/cors`, {
      headers: { origin: unlisted.origin, cookie: 'session=alice-7f3a', accept: 'text/event-stream' },
    });
    assert.equal(direct.headers.get('access-control-allow-origin'), null);
    assert.notEqual(direct.headers.get('content-type'), 'text/event-stream');
    await direct.body?.cancel();

    // And the hub did no stream work for it: one stream on the topic, the listed page's.
    const connections = await until(async () => {
      const list = await (await fetch(`${hub.url}/connections`, { headers: authorization() })).json();
      const mine = list.filter((c) => c.topic === 'cors');
      return mine.length >= 1 && mine;
    }, { what: 'the listed stream in /connections' });
    assert.equal(connections.length, 1, `only the listed origin's stream is open: ${JSON.stringify(connections)}`);

    await context.close();
  });
  test('a listed origin reads a private topic with the sse_token cookie and publishes with the token', async () => {
    const topic = 'private/alice';
    const token = hubToken({ subscribe: ['private/alice'], publish: ['private/alice'] });
    const context = await browser.newContext();
    // The hub's cookie, as a login on the hub's origin would have set it.
    await context.addCookies([{ name: 'sse_token', value: token, url: hub.url, sameSite: 'Strict', httpOnly: true }]);
    const page = await context.newPage();
    await page.goto(`${allowed.origin}/`);

    // Without credentials, the private topic is refused (401): the browser gives up.
    const anonymous = await context.newPage();
    await anonymous.goto(`${allowed.origin}/`);
    await openSource(anonymous, `${hub.url}/events/${topic}`);
    await waitForSse(anonymous, (sse) => sse.errors.includes(2), null, { what: 'the anonymous stream to fail' });
    assert.equal(await anonymous.evaluate(() => window.sse.opens), 0);

    // With credentials, the cookie goes along and the stream opens.
    await openSource(page, `${hub.url}/events/${topic}`, { withCredentials: true });
    await waitForSse(page, (sse) => sse.opens === 1, null, { what: 'the private stream to open' });

    // The page publishes with the token in the Authorization header (a preflighted request the
    // hub allows for listed origins), and receives its own event.
    const published = await page.evaluate(
      async ({ url, token }) => {
        const res = await fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
          body: 'for alice only',
        });
        return { status: res.status, body: await res.json() };
      },
      { url: `${hub.url}/publish/${topic}`, token },
    );
    assert.equal(published.status, 200);
    await waitForSse(page, (sse) => sse.received.length >= 1, null, { what: 'the private event' });
    assert.deepEqual(await received(page), [
      { type: 'message', data: 'for alice only', lastEventId: published.body.id },
    ]);

    // The same publish without the token is refused, and the stream gets nothing more.
    const refused = await page.evaluate(async (url) => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'forged' });
      return res.status;
    }, `${hub.url}/publish/${topic}`);
    assert.equal(refused, 401);
    await publish(hub.url, topic, 'from the server');
    await waitForSse(page, (sse) => sse.received.length >= 2, null, { what: 'the next private event' });
    assert.deepEqual((await received(page)).map((e) => e.data), ['for alice only', 'from the server']);

    await context.close();
  });
});
