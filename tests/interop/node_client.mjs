// Reads an event stream with the `eventsource` npm package and prints each event as one JSON line.
//
//     node node_client.mjs URL COUNT '["price", ...]'
//
// Prints {"client": "eventsource", "open": true} on `open`, then one line {type, data, lastEventId}
// per `MessageEvent` exactly as the package fires it (listening for `message` and for each named
// type given), and exits after COUNT events. Run by driver.mjs; exits 1 on any error, including
// the stream ending early (the package would reconnect by itself; here that is a failure).

import { EventSource } from "eventsource";

const [url, countArg, namesArg = "[]"] = process.argv.slice(2);
const count = Number(countArg);
const names = JSON.parse(namesArg);

const emit = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

let received = 0;
const source = new EventSource(url);
source.onopen = () => {
  emit({ client: "eventsource", open: true });
  if (count === 0) finish(0);
};
source.onerror = (err) => {
  process.stderr.write(
    `eventsource: error after ${received} of ${count} events: ${err.message ?? "stream ended"} (code ${err.code})\n`,
  );
  finish(1);
};
const onEvent = (event) => {
  emit({ type: event.type, data: event.data, lastEventId: event.lastEventId });
  received += 1;
  if (received === count) finish(0);
};
for (const type of new Set(["message", ...names])) source.addEventListener(type, onEvent);

function finish(code) {
  source.close();
  // Let stdout drain before exiting.
  process.stdout.write("", () => process.exit(code));
}
