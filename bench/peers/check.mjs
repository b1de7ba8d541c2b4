// Smoke check of a benchmark peer (no dependencies; Node >= 20):
//
//   node check.mjs --base http://127.0.0.1:8082 [--conns 2000] [--pid PID] [--replay]
//
// Opens --conns SSE connections to GET /events/<topic> (Accept: text/event-stream),
// publishes one event with POST /publish/<topic>, and counts how many connections
// received it. With --pid, prints the server's VmRSS before and after connecting.
// With --replay (peers with a message buffer, i.e. nchan), publishes 1200 events
// and reconnects with Last-Event-ID to check what is replayed; --storm N then has
// N clients reconnect at once, each 1000 events behind.
// Loopback only; every wait is bounded.
import net from "node:net";
import fs from "node:fs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? args[i + 1] : dflt;
};
const base = new URL(opt("base", "http://127.0.0.1:8082"));
const conns = Number(opt("conns", "2000"));
const pid = opt("pid", null);
const replay = args.includes("--replay");
const storm = Number(opt("storm", "0"));
const host = base.hostname;
const port = Number(base.port);
if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host) && !host.startsWith("127.")) {
	console.error("check.mjs talks to loopback addresses only");
	process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rss = () => {
	if (!pid) return null;
	const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
	return Number(/VmRSS:\s+(\d+)/.exec(s)[1]);
};

function post(path, body) {
	return fetch(new URL(path, base), {
		method: "POST",
		body,
		headers: { "content-type": "text/plain" },
		signal: AbortSignal.timeout(10_000),
	}).then(async (r) => {
		await r.arrayBuffer();
		if (!r.ok) throw new Error(`publish: HTTP ${r.status}`);
		return r.status;
	});
}

// One raw SSE connection; collects the bytes as text.
function subscribe(topic, headers = {}) {
	return new Promise((resolve, reject) => {
		const sock = net.connect({ host, port });
		const c = { sock, text: "", head: null, status: 0, closed: false };
		sock.setEncoding("utf8");
		sock.on("connect", () => {
			let req = `GET /events/${topic} HTTP/1.1\r\nHost: ${base.host}\r\nAccept: text/event-stream\r\n`;
			for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
			sock.write(`${req}\r\n`);
		});
		sock.on("data", (d) => {
			c.text += d;
			if (c.head === null) {
				const i = c.text.indexOf("\r\n\r\n");
				if (i >= 0) {
					c.head = c.text.slice(0, i);
					c.status = Number(c.head.split(" ")[1]);
					c.text = c.text.slice(i + 4);
					resolve(c);
				}
			}
		});
		sock.on("error", (e) => {
			c.closed = true;
			reject(e);
		});
		sock.on("close", () => {
			c.closed = true;
			reject(new Error("closed before response head"));
		});
	});
}

const count = (text, needle) => text.split(needle).length - 1;

async function fanout() {
	const topic = `check-${process.pid}-${Date.now()}`;
	const rss0 = rss();
	const t0 = Date.now();
	const subs = [];
	let errors = 0;
	const batch = 200;
	for (let i = 0; i < conns; i += batch) {
		const n = Math.min(batch, conns - i);
		const res = await Promise.allSettled(Array.from({ length: n }, () => subscribe(topic)));
		for (const r of res) {
			if (r.status === "fulfilled" && r.value.status === 200) subs.push(r.value);
			else errors++;
		}
	}
	console.log(`connected ${subs.length}/${conns} in ${Date.now() - t0} ms, errors ${errors}`);
	await sleep(1000);
	const rss1 = rss();
	if (pid) {
		const per = ((rss1 - rss0) * 1024) / Math.max(1, subs.length);
		console.log(`VmRSS before ${rss0} KiB, with ${subs.length} conns ${rss1} KiB (+${(per / 1024).toFixed(1)} KiB/conn)`);
	}
	const marker = `t=${process.hrtime.bigint()};check-${Math.random().toString(36).slice(2)}`;
	const tp = Date.now();
	const status = await post(`/publish/${topic}`, marker);
	let got = 0;
	const deadline = Date.now() + 10_000;
	while (Date.now() < deadline) {
		got = subs.filter((c) => c.text.includes(marker)).length;
		if (got === subs.length) break;
		await sleep(20);
	}
	console.log(`publish HTTP ${status}; delivered to ${got}/${subs.length} within ${Date.now() - tp} ms`);
	const closedEarly = subs.filter((c) => c.closed).length;
	if (closedEarly) console.log(`${closedEarly} connections were closed by the server`);
	const rss2 = rss();
	if (pid) console.log(`VmRSS after the publish ${rss2} KiB`);
	console.log(`sample stream bytes: ${JSON.stringify(subs[0]?.text.slice(0, 300))}`);
	console.log(`sample response head:\n${subs[0]?.head}`);
	for (const c of subs) c.sock.destroy();
	return got === subs.length && subs.length === conns && errors === 0;
}

async function replayCheck() {
	const topic = `replay-${process.pid}-${Date.now()}`;
	const live = await subscribe(topic);
	const total = 1200;
	for (let i = 0; i < total; i++) await post(`/publish/${topic}`, `t=${process.hrtime.bigint()};n=${i}`);
	const deadline = Date.now() + 10_000;
	while (count(live.text, ";n=") < total && Date.now() < deadline) await sleep(20);
	// Parse "id: X" / "data: t=...;n=I" pairs from the live stream.
	const ids = [];
	for (const ev of live.text.split("\n\n")) {
		const id = /^id: ?(.*)$/m.exec(ev)?.[1];
		const n = /;n=(\d+)/.exec(ev)?.[1];
		if (id !== undefined && n !== undefined) ids[Number(n)] = id;
	}
	console.log(`live subscriber got ${count(live.text, ";n=")}/${total}; ids e.g. ${ids[0]} .. ${ids[total - 1]}`);
	live.sock.destroy();
	let ok = true;
	for (const [after, expectFirst, expectCount] of [
		[1100, 1101, 99],
		[500, 501, 699],
		[100, 200, 1000], // older than the 1000-message buffer
	]) {
		const c = await subscribe(topic, { "Last-Event-ID": ids[after] });
		const until = Date.now() + 5000;
		let prev = -1;
		while (Date.now() < until) {
			await sleep(100);
			const n = count(c.text, ";n=");
			if (n === prev) break;
			prev = n;
		}
		const ns = [...c.text.matchAll(/;n=(\d+)/g)].map((m) => Number(m[1]));
		const good = ns.length === expectCount && ns[0] === expectFirst;
		ok &&= good;
		console.log(
			`Last-Event-ID ${ids[after]} (after n=${after}): replayed ${ns.length} events, n=${ns[0]}..${ns[ns.length - 1]} ` +
				`(expected ${expectCount} from n=${expectFirst}) ${good ? "ok" : "MISMATCH"}`,
		);
		c.sock.destroy();
	}
	if (storm > 0) {
		const t0 = Date.now();
		const res = await Promise.allSettled(
			Array.from({ length: storm }, () => subscribe(topic, { "Last-Event-ID": ids[199] })),
		);
		const subs = res.filter((r) => r.status === "fulfilled" && r.value.status === 200).map((r) => r.value);
		const until = Date.now() + 30_000;
		let done = 0;
		while (Date.now() < until) {
			done = subs.filter((c) => c.text.includes(";n=1199\n")).length;
			if (done === subs.length) break;
			await sleep(20);
		}
		const full = subs.filter((c) => count(c.text, ";n=") === 1000).length;
		const good = subs.length === storm && full === storm;
		ok &&= good;
		console.log(
			`storm: ${subs.length}/${storm} reconnected 1000 behind; ${full} got all 1000 events; ` +
				`all caught up in ${Date.now() - t0} ms ${good ? "ok" : "MISMATCH"}`,
		);
		for (const c of subs) c.sock.destroy();
	}
	return ok;
}

let ok = await fanout();
if (replay) ok = (await replayCheck()) && ok;
console.log(ok ? "check: ok" : "check: FAILED");
process.exit(ok ? 0 : 1);
