// better-sse + express peer for the tower-sse benchmarks.
//
//   ADDR=127.0.0.1:8083 node server.mjs
//
//   GET  /events/:topic   SSE stream of the topic (better-sse session on the topic's channel)
//   POST /publish/:topic  body (text, <= 2 KiB) is broadcast as the event's data; 204
//   GET  /plain           small text response
//
// One process, one event loop: no cluster, no worker threads.
//
// Topics are what a careful user writes so that per-user topics do not pile up: a topic's
// channel is created by its first subscriber and forgotten when its last session leaves; a
// publish to a topic without subscribers is dropped (better-sse keeps no history, so nobody
// could have received it). HISTORY_AGE_MS and TOPIC_IDLE_TTL_MS therefore have nothing to
// configure; when either is set, an `expiry: …` line says so.
import http from "node:http";
import express from "express";
import { createChannel, createSession } from "better-sse";

function parseAddr(addr) {
	const i = addr.lastIndexOf(":");
	if (i <= 0) throw new Error(`ADDR must be host:port, got ${JSON.stringify(addr)}`);
	let host = addr.slice(0, i);
	const port = Number(addr.slice(i + 1));
	if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
	if (!Number.isInteger(port) || port < 0 || port > 65535) {
		throw new Error(`bad port in ADDR ${JSON.stringify(addr)}`);
	}
	return { host, port };
}

const addr = process.env.ADDR ?? "127.0.0.1:8083";
const { host, port } = parseAddr(addr);

// Published bodies are already the event data: send them verbatim instead of
// better-sse's default JSON.stringify (which would wrap them in quotes). better-sse
// writes the serialized value after a single `data:`, relying on JSON having no
// newlines, so a multi-line body is split into one `data:` line per line here.
// Everything else (keep-alive comment every 10 s, `retry:2000` on connect,
// `event:message`, a random UUID id per broadcast) stays at better-sse's defaults.
const sessionOptions = {
	serializer: (data) => String(data).replace(/\r\n|\r|\n/g, "\ndata:"),
};

const channels = new Map();
function channelFor(topic) {
	let channel = channels.get(topic);
	if (channel === undefined) {
		channel = createChannel();
		channel.on("session-deregistered", () => {
			if (channel.sessionCount === 0 && channels.get(topic) === channel) channels.delete(topic);
		});
		channels.set(topic, channel);
	}
	return channel;
}

if (process.env.HISTORY_AGE_MS !== undefined || process.env.TOPIC_IDLE_TTL_MS !== undefined) {
	console.log("expiry: nothing to expire: no history, and a topic exists only while it has subscribers");
}

const app = express();
app.disable("etag");

app.get("/events/:topic", async (req, res) => {
	const session = await createSession(req, res, sessionOptions);
	// The client may have gone away while the session was being set up.
	if (session.isConnected) channelFor(req.params.topic).register(session);
});

app.post(
	"/publish/:topic",
	express.text({ type: () => true, limit: "2kb", defaultCharset: "utf-8" }),
	(req, res) => {
		if (typeof req.body !== "string") {
			res.status(400).type("text/plain").send("expected a text body\n");
			return;
		}
		channels.get(req.params.topic)?.broadcast(req.body);
		res.status(204).end();
	},
);

app.get("/plain", (_req, res) => {
	res.type("text/plain").send("hello\n");
});

const server = http.createServer(app);
server.on("error", (err) => {
	console.error(`better-sse peer: ${err.message}`);
	process.exit(1);
});
// backlog 1024 matches tokio's TcpListener::bind and the nchan peer's config.
server.listen({ host, port, backlog: 1024 }, () => {
	const a = server.address();
	const shown = a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
	console.log(`listening on http://${shown}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
	process.on(sig, () => process.exit(0));
}
