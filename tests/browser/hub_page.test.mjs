// The hub server's own page at `/` (README: "The hub serves a page at `/` to watch a topic and
// publish to it"), driven as a person would: it watches a topic, its publish form sends an event,
// and the event shows in its list with its id; watching another topic moves its stream there.

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

  before(async () => {
    browser = await launchBrowser();
    hub = await startExample('hub');
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
    await until(async () => (await streamsOn(hub.url, 'news')).length === 1, {
      what: "the page's stream on news in /connections",
    });
    await page.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, {
      timeout: 15_000,
      polling: 20,
    });

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
    const other = await publish(hub.url, 'news', 'from curl');
    const fromCurl = await entry(page, "someone else's event", (e) => e.text.endsWith('from curl'));
    assert.equal(fromCurl.id, other);

    // Watching another topic: the stream moves there, the list starts again, and the form
    // publishes to the topic watched.
    await page.locator('#watch input[name=topic]').fill('sports');
    await page.locator('#watch button').click();
    await until(
      async () => (await streamsOn(hub.url, 'sports')).length === 1 && (await streamsOn(hub.url, 'news')).length === 0,
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

    assert.deepEqual(errors, [], 'no script errors');
    await screenshot(page, 'hub-page');
    await context.close();
  });
});
