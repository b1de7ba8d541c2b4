// The resumable answer of `examples/llm.rs`, in its own page: reloading the page mid-answer picks
// the answer up again with no token missing or repeated, and the Stop button cancels it (the page
// says `stopped`, the text stops growing, and the answer's stream ends with `cancelled`).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, missing, recordEventSourceRequests, screenshot, startExample } from './support.mjs';

/// The words of `token_text` in examples/llm.rs, after the prompt's first eight words.
const WORDS = [
  'Server-Sent', 'Events', 'carry', 'this', 'answer', 'one', 'token', 'at', 'a', 'time,',
  'and', 'a', 'reload', 'picks', 'it', 'up', 'where', 'it', 'was.',
];

/// The `n`th token (from 1) of the simulated answer to `prompt`, by the rule of `token_text`.
function tokenText(prompt, n) {
  const words = prompt.split(/\s+/).filter(Boolean).slice(0, 8);
  const index = n - 1;
  return `${index < words.length ? words[index] : WORDS[(index - words.length) % WORDS.length]} `;
}

/// The whole answer of `tokens` tokens to `prompt`.
const fullAnswer = (prompt, tokens) =>
  Array.from({ length: tokens }, (_, i) => tokenText(prompt, i + 1)).join('');

/// Parses a text/event-stream body into the events an EventSource would dispatch:
/// `{ event, data, id }` (`event` defaults to `message`; `id` is the last id seen).
function parseEvents(body) {
  const events = [];
  let lastId = '';
  let event = '';
  let data = null;
  for (const line of body.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (data !== null) events.push({ event: event || 'message', data: data.join('\n'), id: lastId });
      event = '';
      data = null;
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') (data ??= []).push(value);
    else if (field === 'id' && !value.includes('\0')) lastId = value;
  }
  return events;
}

/// Reads `GET /chat/{id}/stream` from Node, as a fresh first connection, to its end (the
/// stream ends after `done` or `cancelled`); returns the status and the parsed events.
async function readAnswer(base, id) {
  const res = await fetch(`${base}/chat/${encodeURIComponent(id)}/stream`, {
    headers: { accept: 'text/event-stream' },
    signal: AbortSignal.timeout(20_000),
  });
  const body = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), events: parseEvents(body) };
}

/// `POST /chat` from Node; returns the answer's id.
async function ask(base, body) {
  const res = await fetch(`${base}/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 201, `POST /chat answered ${res.status}: ${text}`);
  const { id } = JSON.parse(text);
  assert.ok(typeof id === 'string' && id, `POST /chat answered without an id: ${text}`);
  return id;
}

/// What the page shows: `#status`, `#answer`, and the number of tokens in `#answer` (each token
/// is one word followed by one space).
const shown = (page) =>
  page.evaluate(() => {
    const answer = document.querySelector('#answer').textContent;
    return {
      status: document.querySelector('#status').textContent,
      answer,
      tokens: (answer.match(/ /g) || []).length,
      stored: sessionStorage.getItem('answer'),
    };
  });

/// Waits until `predicate(shown)` (run in the page, on the same fields as `shown`) holds; the
/// timeout is only a failure guard, and the error says what the page showed.
async function waitForShown(page, predicate, { timeout = 20_000, what = 'condition' } = {}) {
  try {
    await page.waitForFunction(
      (src) => {
        const answer = document.querySelector('#answer')?.textContent ?? '';
        const seen = {
          status: document.querySelector('#status')?.textContent,
          answer,
          tokens: (answer.match(/ /g) || []).length,
        };
        return (0, eval)(`(${src})`)(seen);
      },
      predicate.toString(),
      { timeout, polling: 20 },
    );
  } catch (err) {
    const seen = await shown(page).catch(() => 'page gone');
    err.message = `waiting for ${what}: ${err.message}\npage showed: ${JSON.stringify(seen)}`;
    throw err;
  }
}

describe('llm example: a resumable answer in the browser', { skip: missing('chromium') }, () => {
  let browser, server;
  const cleanups = [];

  before(async () => {
    browser = await launchBrowser();
    server = await startExample('llm');
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await browser?.close();
    await server?.stop();
  });

  async function openPage() {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    cleanups.push(() => context.close());
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    const requests = recordEventSourceRequests(page);
    await page.goto(server.url);
    return { page, errors, requests };
  }

  test('a reload mid-answer ends with the whole answer: no token missing or repeated', async () => {
    const prompt = 'Explain résumé streams 🐝 briefly';
    const tokens = 150;
    const { page, errors, requests } = await openPage();
    assert.equal((await shown(page)).status, 'idle');

    // The form sends only the prompt; ask with a token count and interval of our own, and
    // watch the answer with the page's own `watch`.
    const id = await page.evaluate(
      async (body) => {
        const r = await fetch('/chat', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        if (r.status !== 201) throw new Error(`POST /chat answered ${r.status}: ${await r.text()}`);
        const { id } = await r.json();
        watch(id);
        return id;
      },
      { prompt, tokens, interval_ms: 20 },
    );

    await waitForShown(page, (s) => s.tokens >= 30, { what: '30 tokens before the reload' });
    const before = await shown(page);
    assert.equal(before.status, 'streaming');
    assert.equal(before.stored, id, 'the page remembers the answer in sessionStorage');
    assert.ok(before.tokens < tokens, `the answer is still going at the reload (${before.tokens} tokens shown)`);
    assert.ok(
      fullAnswer(prompt, tokens).startsWith(before.answer),
      `what the page showed before the reload is the answer's start: ${JSON.stringify(before.answer)}`,
    );

    await page.reload();
    // The reloaded page's script has run (`reload` waits for `load`): it found the answer's id in
    // sessionStorage and is watching it again.
    const reloaded = await shown(page);
    assert.equal(
      reloaded.stored,
      id,
      `after the reload the page still remembers the answer in sessionStorage; it showed ${JSON.stringify(reloaded)}`,
    );
    await waitForShown(page, (s) => s.status.startsWith('done'), { what: 'the answer to finish after the reload' });
    const done = await shown(page);
    assert.equal(done.status, `done (${tokens} tokens)`);
    assert.equal(done.stored, null, 'a finished answer is forgotten');
    assert.deepEqual(errors, [], 'no script errors');

    // The reloaded page reopened the answer's stream by itself: one EventSource request per
    // load, both for this answer, both first connections.
    assert.equal(requests.length, 2, `one stream per page load: ${requests.map((r) => r.url)}`);
    for (const request of requests) {
      await request.headersReady;
      assert.equal(request.url, `${server.url}/chat/${id}/stream`);
      assert.equal(request.headers['last-event-id'], undefined, 'a first connection, from the start');
    }

    // The page shows exactly the answer: by the example's rule, and as a fresh read of the
    // stream from Node has it.
    const read = await readAnswer(server.url, id);
    assert.equal(read.status, 200);
    assert.match(read.type ?? '', /^text\/event-stream/);
    const last = read.events.at(-1);
    assert.deepEqual({ event: last.event, data: JSON.parse(last.data) }, { event: 'done', data: { tokens } });
    const streamed = read.events.filter((e) => e.event === 'token');
    assert.equal(streamed.length, tokens, 'the stream has every token once');
    assert.equal(new Set(streamed.map((e) => e.id)).size, tokens, 'each token has an id of its own');
    assert.equal(streamed.map((e) => e.data).join(''), fullAnswer(prompt, tokens), 'the stream is the rule\'s answer');
    assert.equal(done.answer, fullAnswer(prompt, tokens), 'the page shows the whole answer, once');
    assert.equal(done.tokens, tokens);
    await screenshot(page, 'llm-reloaded');
  });

  test('Stop: the page says stopped, the answer stops growing, and the stream ends with cancelled', async () => {
    const prompt = 'Stop me when you have heard enough';
    const { page, errors, requests } = await openPage();
    // The page's own form and its default answer: 200 tokens, one every 20 ms.
    await page.fill('input[name=prompt]', prompt);
    await page.click('#ask button:not(#stop)');
    await waitForShown(page, (s) => s.status === 'streaming' && s.tokens >= 5, { what: 'a few tokens' });
    const id = (await shown(page)).stored;
    assert.ok(id, 'the page remembers the answer in sessionStorage');
    assert.equal(await page.isEnabled('#stop'), true, 'Stop is enabled while streaming');

    const cancelled = page.waitForResponse((r) => r.url().endsWith(`/chat/${id}/cancel`), { timeout: 15_000 });
    await page.click('#stop');
    const cancel = await cancelled;
    assert.equal(cancel.request().method(), 'POST');
    assert.equal(cancel.status(), 202);

    await waitForShown(page, (s) => s.status === 'stopped', { what: 'the status "stopped"' });
    const stopped = await shown(page);
    assert.ok(stopped.tokens >= 5 && stopped.tokens < 200, `stopped part-way: ${stopped.tokens} tokens`);
    assert.equal(stopped.stored, null, 'a stopped answer is forgotten');
    assert.equal(await page.isDisabled('#stop'), true, 'Stop is disabled again');
    assert.equal(await page.evaluate(() => source.readyState), 2, 'the page closed its EventSource');

    // A fresh read of the answer from Node: the tokens produced before the cancel, then
    // `cancelled`, and the stream ends. The page shows exactly those tokens.
    const read = await readAnswer(server.url, id);
    assert.equal(read.status, 200);
    const last = read.events.at(-1);
    assert.equal(last.event, 'cancelled', `the stream ends with cancelled: ${JSON.stringify(read.events.slice(-3))}`);
    assert.equal(read.events.filter((e) => e.event === 'done').length, 0, 'no done after a cancel');
    const streamed = read.events.filter((e) => e.event === 'token').map((e) => e.data);
    assert.equal(streamed.join(''), fullAnswer(prompt, streamed.length), 'the stream is the rule\'s answer, cut short');
    assert.equal(stopped.answer, streamed.join(''), 'the page shows every token produced before the cancel');

    // It stays stopped. Barrier, on the server's own token clock: a second answer of 10 tokens
    // at the same 20 ms interval, read to its end from Node, twice; the cancelled answer would
    // have produced more tokens meanwhile. The page's text is the same at each poll.
    const polls = [stopped.answer.length];
    for (let i = 0; i < 2; i++) {
      const barrier = await readAnswer(server.url, await ask(server.url, { prompt: 'barrier', tokens: 10, interval_ms: 20 }));
      assert.equal(barrier.events.at(-1).event, 'done');
      polls.push((await shown(page)).answer.length);
    }
    assert.deepEqual(polls, [polls[0], polls[0], polls[0]], 'the answer stopped growing');
    const again = await readAnswer(server.url, id);
    assert.deepEqual(again.events, read.events, 'the cancelled answer did not grow on the server either');
    assert.equal((await shown(page)).status, 'stopped');
    assert.equal(requests.length, 1, 'the page did not reconnect');
    assert.deepEqual(errors, [], 'no script errors');
    await screenshot(page, 'llm-stopped');
  });
});
