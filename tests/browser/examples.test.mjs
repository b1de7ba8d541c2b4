// The examples people copy, loaded in a real browser: each goes live, shows live updates, and
// leaves a screenshot in target/browser-screenshots/ (a CI artifact, not committed).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, missing, screenshot, startExample } from './support.mjs';

const text = (page, selector) => page.locator(selector).first().textContent({ timeout: 15_000 });

/// Waits until `#state` reads `live`.
async function live(page) {
  await page.waitForFunction(
    () => document.querySelector('#state')?.textContent.trim() === 'live',
    null,
    { timeout: 15_000, polling: 50 },
  );
}

/// The texts of the elements matching `selector`, trimmed.
const texts = (page, selector) =>
  page.$$eval(selector, (els) => els.map((el) => el.textContent.trim()));

describe('examples in the browser', { skip: missing('chromium') }, () => {
  let browser;
  const servers = [];

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const server of servers) await server.stop();
  });

  test('dashboard: the page goes live, fills the board and counts updates as they arrive', async () => {
    const server = await startExample('dashboard', { TICK_MS: '200' });
    servers.push(server);
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(server.url);

    await live(page);
    await page.waitForFunction(() => document.querySelectorAll('#board tr[data-id]').length > 0, null, {
      timeout: 15_000,
      polling: 50,
    });
    const count = (s) => Number(/\d+/.exec(s ?? '')?.[0] ?? NaN);
    const first = count(await text(page, '#updates'));
    assert.ok(Number.isFinite(first), '#updates shows a number');
    const board = await page.locator('#board').innerText();
    // Live: the counter goes up by several, and what the board shows changes.
    await page.waitForFunction(
      ([first, board]) =>
        Number(/\d+/.exec(document.querySelector('#updates').textContent)?.[0]) >= first + 3 &&
        document.querySelector('#board').innerText !== board,
      [first, board],
      { timeout: 15_000, polling: 50 },
    );
    const ids = await page.$$eval('#board tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
    assert.equal(new Set(ids).size, ids.length, `one row per id: ${ids}`);
    assert.equal(await text(page, '#state'), 'live');
    assert.deepEqual(errors, [], 'no script errors');
    await screenshot(page, 'dashboard');
    await context.close();
  });

  test('chat: a message sent in one page appears in both, and both names are online', async () => {
    const server = await startExample('chat');
    servers.push(server);
    const people = [];
    for (const name of ['Alice', 'Bob 🐝']) {
      // One browser context each: two people, not two tabs of one.
      const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (err) => errors.push(err.message));
      await page.goto(server.url);
      await page.locator('#name').fill(name);
      await page.locator('#name').press('Tab'); // commits the name (change event)
      people.push({ name, context, page, errors });
    }
    for (const { page } of people) await live(page);

    // Who is online, from the registry: exactly both names, in both pages (the guest names the
    // pages connected with before their names were set have left).
    const everyone = people.map((p) => p.name).sort();
    for (const { page } of people) {
      await page.waitForFunction(
        (everyone) => {
          const online = [...document.querySelectorAll('#online li')].map((li) => li.textContent.trim()).sort();
          return JSON.stringify(online) === JSON.stringify(everyone);
        },
        everyone,
        { timeout: 15_000, polling: 50 },
      ).catch(async (err) => {
        err.message += `\n#online shows ${JSON.stringify(await texts(page, '#online li'))}`;
        throw err;
      });
    }

    const [alice, bob] = people;
    const said = 'Grüße aus dem Browser 👋 — <b>not bold</b>';
    await alice.page.locator('#text').fill(said);
    await alice.page.$eval('form#send', (form) => form.requestSubmit());
    for (const { page } of people) {
      await page.waitForFunction(
        (said) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(said)),
        said,
        { timeout: 15_000, polling: 50 },
      );
    }
    // Shown as text (not HTML), with who said it.
    for (const { page } of people) {
      const line = (await texts(page, '#messages li')).find((t) => t.includes(said));
      assert.ok(line.includes(alice.name), `the message says who sent it: ${line}`);
      assert.equal(await page.$$eval('#messages li b', (b) => b.length), 0, 'message text is not parsed as HTML');
    }
    assert.equal(await alice.page.locator('#text').inputValue(), '', 'the input is cleared after sending');

    const reply = 'Hallo Alice!';
    await bob.page.locator('#text').fill(reply);
    await bob.page.$eval('form#send', (form) => form.requestSubmit());
    await alice.page.waitForFunction(
      (reply) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(reply)),
      reply,
      { timeout: 15_000, polling: 50 },
    );

    for (const { page, errors } of people) {
      assert.equal(await text(page, '#state'), 'live');
      assert.deepEqual(errors, [], 'no script errors');
    }
    await screenshot(alice.page, 'chat');
    await screenshot(bob.page, 'chat-bob');
    for (const { context } of people) await context.close();
  });
});
