// The hub server's own page at `/` (README: "The hub serves a page at `/` to watch a topic and
// publish to it"), driven as a person would on a first run: the hub started with no key prints a
// publisher token; without it the page watches public topics but cannot publish; with it pasted
// in, its publish form sends an event, which shows in its list with its id, and it watches a
// private topic with the token as its cookie; watching another topic moves its stream there.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, missing, publish, screenshot, startExample, streamsOn, until } from './support.mjs';

/// The texts of the page's list, newest first, each as `{ id, text, cls }`.
const log = (page) =>
  page.$$eval('#log li', (items) =>
    items.map((li) => ({
      id: li.querySelector('.id')?.textContent ?? null,
      text: li.textContent,
      cls: li.className,
    })),
  );

/// Waits until the page's list has an entry for which `match(entry)` holds; returns it.
async function entry(page, what, match) {
  let seen = [];
  try {
    return await until(async () => {
      seen = await log(page);
      return seen.find(match);
    }, { what });
  } catch (err) {
    err.message += `\nthe page's list: ${JSON.stringify(seen, null, 1)}`;
    throw err;
  }
}

describe('the hub page in the browser', { skip: missing('chromium') }, () => {
  let browser, hub;

  let token, admin;

  before(async () => {
    browser = await launchBrowser();
    // As in the README: no JWT_SECRET, so the hub makes a secret of its own and prints tokens.
    hub = await startExample('hub', { JWT_SECRET: '', PUBLIC_TOPICS: 'news,sports' });
    token = /^ {2}TOKEN=(\S+)$/m.exec(hub.output)?.[1];
    admin = /\/admin\?authorization=(\S+)$/m.exec(hub.output)?.[1];
    assert.ok(token && admin, `the hub printed a publisher token and an admin URL:\n${hub.output}`);
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  test('the page watches a topic, publishes with its form, and shows each event with its id', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${hub.url}/`);

    // It watches "news" by itself: its stream is at the hub, and it says it is open.
    await until(async () => (await streamsOn(hub.url, 'news', { token: admin })).length === 1, {
      what: "the page's stream on news in /connections",
    });
    await page.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, {
      timeout: 15_000,
      polling: 20,
    });

    // Without a token it cannot publish, and says what to do.
    const refused = page.waitForResponse((r) => r.url().endsWith('/publish/news'));
    await page.locator('#publish input[name=data]').fill('no token');
    await page.locator('#publish button').click();
    assert.equal((await refused).status(), 401);
    await entry(page, 'the note that publishing needs a token', (e) => e.cls === 'note' && e.text.includes('needs a token'));

    // The printed token, pasted in: kept for the tab, and the cookie its EventSource sends.
    await page.locator('#token input[name=token]').fill(token);
    await page.locator('#token button').click();
    await entry(page, 'the note that the token is set', (e) => e.cls === 'note' && e.text === 'token set');
    const cookies = await context.cookies(hub.url);
    assert.equal(cookies.find((c) => c.name === 'sse_token')?.value, token, 'the token is the sse_token cookie');

    // Its publish form: the id the hub answered is the one the list shows.
    const published = page.waitForResponse((r) => r.url().endsWith('/publish/news'));
    await page.locator('#publish input[name=data]').fill('hello from the page');
    await page.locator('#publish button').click();
    const response = await published;
    assert.equal(response.status(), 200);
    const { id } = await response.json();
    const shown = await entry(page, 'the published event in the list', (e) => e.text.endsWith('hello from the page'));
    assert.equal(shown.id, id, 'the list shows the id the hub gave the event');
    assert.equal(await page.locator('#publish input[name=data]').inputValue(), '', 'the form is cleared');

    // With an event name, the page shows it under that name.
    await page.locator('#publish input[name=data]').fill('{"eur":1.08}');
    await page.locator('#publish input[name=event]').fill('price');
    await page.locator('#publish button').click();
    await entry(page, 'the named event in the list', (e) => e.text.endsWith('price: {"eur":1.08}'));

    // Published by someone else, it shows too.
    const other = await publish(hub.url, 'news', 'from curl', undefined, { token });
    const fromCurl = await entry(page, "someone else's event", (e) => e.text.endsWith('from curl'));
    assert.equal(fromCurl.id, other);

    // Watching another topic: the stream moves there, the list starts again, and the form
    // publishes to the topic watched.
    await page.locator('#watch input[name=topic]').fill('sports');
    await page.locator('#watch button').click();
    await until(
      async () =>
        (await streamsOn(hub.url, 'sports', { token: admin })).length === 1 &&
        (await streamsOn(hub.url, 'news', { token: admin })).length === 0,
      { what: "the page's stream to move from news to sports" },
    );
    await entry(page, 'the note that it watches sports', (e) => e.cls === 'note' && e.text === 'watching "sports"');
    await page.locator('#publish input[name=data]').fill('goal');
    await page.locator('#publish input[name=event]').fill('');
    await page.locator('#publish button').click();
    const goal = await entry(page, 'the event on sports', (e) => e.text.endsWith('goal'));
    assert.equal(goal.text, `${goal.id}goal`, 'a plain message, with its id');
    const list = await log(page);
    assert.ok(!list.some((e) => e.text.includes('from curl')), 'the list of news is gone');

    // A private topic (not in PUBLIC_TOPICS): watched with the token's cookie.
    await page.locator('#watch input[name=topic]').fill('user/42/inbox');
    await page.locator('#watch button').click();
    await until(async () => (await streamsOn(hub.url, 'user/42/inbox', { token: admin })).length === 1, {
      what: "the page's stream on the private topic",
    });
    const secret = await publish(hub.url, 'user/42/inbox', 'for your eyes only', undefined, { token });
    const shownSecret = await entry(page, 'the private event', (e) => e.text.endsWith('for your eyes only'));
    assert.equal(shownSecret.id, secret);
    await screenshot(page, 'hub-page');

    // Without the token, the same topic is refused, and the page says why.
    await page.locator('#token input[name=token]').fill('');
    await page.locator('#token button').click();
    await entry(page, 'the note that the stream was refused', (e) => e.cls === 'note' && e.text.startsWith('refused'));
    assert.equal(await page.locator('#state').textContent(), 'closed');
    assert.equal((await streamsOn(hub.url, 'user/42/inbox', { token: admin })).length, 0);

    assert.deepEqual(errors, [], 'no script errors');
    await context.close();
  });
});
