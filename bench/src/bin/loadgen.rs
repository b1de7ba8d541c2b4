//! The benchmark client: one tokio current-thread runtime per process, HTTP/1.1 written by hand
//! over `TcpStream`, loopback only, every mode bounded in time.
//!
//! ```text
//! loadgen subscribe --url URL[,URL…] --connections N [--source-ips 127.0.0.1,127.0.0.2] --report FILE
//!                   [--duration S] [--last-event-id ID --expect N] [--connect-concurrency C]
//!                   [--first K] [--accept-encoding gzip|br|zstd]
//! loadgen publish   --url URL[,URL…] [--topic T] --rate R --size BYTES --duration S [--count N]
//!                   [--data json] [--in-flight C]
//! loadgen publish-many --url URL --topics N [--prefix P] [--first K] [--connections C]
//!                   [--pipeline D] [--size BYTES] [--duration S]
//! loadgen plain     --url URL --connections C --duration S
//! loadgen churn     --url URL --concurrency C --duration S [--source-ips ...]
//! loadgen stall     --url URL --connections N [--source-ips ...] [--rcvbuf BYTES]
//!                   [--half-head] [--duration S]
//! ```
//!
//! `subscribe` holds N SSE connections (sockets bound to the source addresses round-robin),
//! counts `data:` lines, reads the publish time from data of the form `t=<unix nanos>;<padding>`
//! and records now − t in an HDR histogram. It prints `ready ESTABLISHED ERRORS` once every
//! connection has its response headers (or failed). On SIGUSR1 it writes `FILE.K.json` (K = 1,
//! 2, …; with `FILE.K.hist`, the histogram in HdrHistogram V2 form) and starts counting afresh;
//! on SIGTERM, after `--duration` (default 600 s), or once every connection has seen `--expect`
//! events, it writes `FILE` (and `FILE.hist`) and exits. A `{i}` in the URL's path makes a topic
//! per connection: connection `i` (counted from `--first`) asks for the path with `{i}` replaced
//! by `K + i`, and counts an event whose data does not name its topic (`…;TOPIC;…`) as misrouted;
//! the reports also count the connections that received at least one event. Several URLs,
//! comma-separated, share the connections: connection `i` opens the `(K + i) % count`th. The
//! reports also hold, since the connections opened, how many connections received each number
//! of events (`events_per_connection`, `{"COUNT": CONNECTIONS, …}`), and `out_of_order`: events
//! whose `id:` was not above the one before on their connection (sent twice, or out of order),
//! for ids of the form `HEAD-SEQ` that tower-sse's are (see `id_order`). With
//! `--accept-encoding`, it asks for that encoding, requires it in the response's
//! `Content-Encoding` (a stream answered in another coding, or in none, counts as an error), and
//! decodes the body (gzip, Brotli or zstd) before parsing it, as a standard decoder reads it:
//! a gzip body may hold several members and a zstd body several frames, one after another. A
//! body that does not decode ends its connection with an error. The reports also count the
//! bytes of the bodies as they came (`body_bytes`: de-chunked, still compressed).
//!
//! `publish` sends one request at a time on one keep-alive connection; with `--in-flight C`, C
//! at once, each on a connection of its own, the rate (`--rate`, 0: as fast as the answers come)
//! being theirs together. Several base URLs, comma-separated, take the requests in turn (request
//! `j` goes to the `j % count`th), each request on a keep-alive connection to its URL. It prints
//! `published` (requests answered), `accepted` (answered 2xx), `errors`, `per_s` (accepted per
//! second) and `first_id`, the id answered to the first request accepted.
//!
//! `publish --data json` sends JSON objects of about `--size` bytes (`{"t":<unix nanos>,…}`, an
//! order with line items of varied values, which compresses about as real JSON does) instead of
//! `t=<unix nanos>;` and padding.
//!
//! `publish-many` publishes one event to each of the topics `P{K}` … `P{K+N-1}` (default prefix
//! `m`, data `t=<nanos>;TOPIC;<padding>`) over C keep-alive connections (default 64), each with
//! D requests written at once before their answers are read (HTTP/1.1 pipelining; default 1:
//! a server without `TCP_NODELAY` holds the second answer of a pipelined pair until the
//! client's delayed ACK, ~40 ms).
//!
//! `stall` holds N connections that never read (issue 12's stalled readers): each sets its
//! receive buffer to `--rcvbuf` bytes before connecting (`SO_RCVBUF`, which also keeps its TCP
//! window small; default: the kernel's), sends `GET path` for an event stream, reads only up to
//! the end of the response head (a 200 counts it established) and then nothing, ever. With
//! `--half-head` it sends half a request head instead (`GET path HTTP/1.1\r\nHo`) and stays
//! silent. It prints `ready ESTABLISHED ERRORS` once every connection is there (or failed), holds
//! them until SIGTERM or `--duration` (default 600 s), then exits, which closes them.
//!
//! The other modes print one JSON line.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, Semaphore};
use tower_sse_bench::find;

use async_compression::codecs::{BrotliDecoder, Decode, GzipDecoder, ZstdDecoder};
use async_compression::core::util::PartialBuffer;

type Opts = HashMap<String, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first().cloned() else {
        eprintln!("usage: loadgen subscribe|publish|publish-many|plain|churn|stall --url URL ...");
        std::process::exit(2);
    };
    let mut opts = Opts::new();
    let mut it = args[1..].iter();
    while let Some(key) = it.next() {
        let key = key.trim_start_matches("--").to_owned();
        let value = it.next().cloned().unwrap_or_default();
        opts.insert(key, value);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&rt, async move {
        match mode.as_str() {
            "subscribe" => subscribe(&opts).await,
            "publish" => publish(&opts).await,
            "publish-many" => publish_many(&opts).await,
            "plain" => plain(&opts).await,
            "churn" => churn(&opts).await,
            "stall" => stall(&opts).await,
            other => {
                eprintln!("loadgen: unknown mode {other}");
                2
            }
        }
    });
    std::process::exit(code);
}

fn opt<T: std::str::FromStr>(opts: &Opts, key: &str, default: T) -> T {
    opts.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `http://HOST:PORT/path` → (address, path, host header).
fn parse_url(url: &str) -> (SocketAddr, String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = host.parse().expect("URL host must be IP:PORT (loopback)");
    assert!(
        addr.ip().is_loopback(),
        "loadgen targets loopback addresses only"
    );
    (addr, path.to_owned(), host.to_owned())
}

fn source_ips(opts: &Opts) -> Vec<IpAddr> {
    let ips: Vec<IpAddr> = opts
        .get("source-ips")
        .map(|s| {
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("source IP"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ips.iter().all(|ip| ip.is_loopback()),
        "source IPs must be in 127.0.0.0/8"
    );
    if ips.is_empty() {
        vec!["127.0.0.1".parse().unwrap()]
    } else {
        ips
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram")
}

async fn connect(addr: SocketAddr, src: IpAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads until the end of the response headers; returns (status, chunked, leftover body bytes,
/// content coding).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, bool, Vec<u8>, Option<String>)> {
    let (body_start, head, status) = head(stream, buf).await?;
    let chunked = head.contains("transfer-encoding: chunked");
    let coding = head
        .lines()
        .find_map(|l| l.strip_prefix("content-encoding:"))
        .map(|v| v.trim().to_owned());
    let rest = buf[body_start..].to_vec();
    buf.clear();
    Ok((status, chunked, rest, coding))
}

/// Reads until `buf` holds the response headers; returns where the body starts, the headers
/// in lower case, and the status.
async fn head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(usize, String, u16)> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok((end + 4, head, status));
        }
        fill(stream, buf).await?;
    }
}

/// Reads more bytes into `buf`; the end of the stream is an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut tmp = [0u8; 8192];
    let n = stream.read(&mut tmp).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&tmp[..n]);
    Ok(())
}

/// A minimal SSE reader: de-chunks the body, decodes it if it is compressed, and hands over
/// each `data:` line.
struct SseReader {
    chunked: bool,
    remaining: usize,
    skip: u8,
    size_line: Vec<u8>,
    body: Vec<u8>,
    eof: bool,
    decoder: Option<Decoder>,
    /// Body bytes as they came (de-chunked, not yet decoded), since the owner last took them.
    body_bytes: u64,
    /// Where the `id:` of the event being read stands in its topic's order ([`id_order`]),
    /// until the blank line that ends the event.
    id: Option<IdKey>,
}

impl SseReader {
    fn new(chunked: bool) -> Self {
        SseReader {
            chunked,
            remaining: 0,
            skip: 0,
            size_line: Vec::new(),
            body: Vec::new(),
            eof: false,
            decoder: None,
            body_bytes: 0,
            id: None,
        }
    }

    /// Decodes the body from `coding` (the response's `Content-Encoding`), if it has one; an
    /// error for a coding it cannot decode.
    fn decoding(mut self, coding: Option<&str>) -> std::io::Result<Self> {
        self.decoder = coding.map(Decoder::new).transpose()?;
        Ok(self)
    }

    /// Adds body bytes (de-chunked), decoded.
    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.body_bytes += bytes.len() as u64;
        match &mut self.decoder {
            None => self.body.extend_from_slice(bytes),
            Some(decoder) => decoder.decode(bytes, &mut self.body)?,
        }
        Ok(())
    }

    /// Feeds raw bytes; calls `on_data` with the text after `data:` of each complete line. An
    /// error for a body that does not decode.
    fn feed(&mut self, data: &[u8], mut on_data: impl FnMut(&[u8])) -> std::io::Result<()> {
        self.feed_events(data, |_, d| on_data(d))
    }

    /// [`feed`](Self::feed), handing over with each `data:` line the order of its event's `id:`
    /// (the last `id:` line since the blank line that ended the event before, read once by
    /// [`id_order`]), if it has one of the form that orders.
    fn feed_events(
        &mut self,
        data: &[u8],
        mut on_data: impl FnMut(Option<IdKey>, &[u8]),
    ) -> std::io::Result<()> {
        if !self.chunked {
            self.push(data)?;
        } else {
            let mut pos = 0;
            while pos < data.len() {
                if self.remaining > 0 {
                    let n = self.remaining.min(data.len() - pos);
                    self.push(&data[pos..pos + n])?;
                    self.remaining -= n;
                    pos += n;
                    if self.remaining == 0 {
                        self.skip = 2;
                    }
                } else if self.skip > 0 {
                    self.skip -= 1;
                    pos += 1;
                } else {
                    let b = data[pos];
                    pos += 1;
                    if b == b'\n' {
                        let line = String::from_utf8_lossy(&self.size_line);
                        let hex = line.trim().split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16).unwrap_or(0);
                        self.size_line.clear();
                        if size == 0 {
                            self.eof = true;
                            break;
                        }
                        self.remaining = size;
                    } else {
                        self.size_line.push(b);
                    }
                }
            }
        }
        let mut start = 0;
        while let Some(i) = self.body[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.body[start..start + i];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                on_data(self.id, rest.strip_prefix(b" ").unwrap_or(rest));
            } else if let Some(rest) = line.strip_prefix(b"id:") {
                self.id = id_order(rest.strip_prefix(b" ").unwrap_or(rest));
            } else if line.is_empty() {
                self.id = None;
            }
            start += i + 1;
        }
        self.body.drain(..start);
        Ok(())
    }
}

/// An incremental decoder of a compressed response body.
struct Decoder {
    codec: Codec,
    /// Whether the last member (gzip) or frame (zstd) ended: bytes after it start another,
    /// which a standard decoder reads on (RFC 1952 § 2.2, RFC 8878 § 3).
    ended: bool,
}

enum Codec {
    Gzip(GzipDecoder),
    Brotli(Box<BrotliDecoder>),
    Zstd(ZstdDecoder),
}

impl Decoder {
    /// A decoder of `coding`; an error for one it cannot decode.
    fn new(coding: &str) -> std::io::Result<Decoder> {
        let codec = match coding {
            "gzip" => Codec::Gzip(GzipDecoder::new()),
            "br" => Codec::Brotli(Box::new(BrotliDecoder::new())),
            "zstd" => Codec::Zstd(ZstdDecoder::new()),
            other => {
                return Err(std::io::Error::other(format!(
                    "cannot decode Content-Encoding {other:?}"
                )));
            }
        };
        Ok(Decoder {
            codec,
            ended: false,
        })
    }

    /// Appends what `bytes` decode to (all that they make decodable) to `out`.
    fn decode(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let ended = &mut self.ended;
        match &mut self.codec {
            Codec::Gzip(d) => decode_into(d, ended, true, bytes, out),
            Codec::Brotli(d) => decode_into(&mut **d, ended, false, bytes, out),
            Codec::Zstd(d) => decode_into(d, ended, true, bytes, out),
        }
    }
}

/// Decodes all of `bytes` into `out`. A gzip member or zstd frame that ends sets `ended`, and
/// bytes after it start the next one; a Brotli body is one stream, with nothing after its end.
fn decode_into<D: Decode>(
    decoder: &mut D,
    ended: &mut bool,
    multi: bool,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut input = PartialBuffer::new(bytes);
    let mut buf = [0u8; 8192];
    loop {
        let mut output = PartialBuffer::new(&mut buf[..]);
        let read = input.written().len();
        if !input.unwritten().is_empty() {
            if *ended {
                if !multi {
                    return Err(std::io::Error::other("bytes after the end of the body"));
                }
                decoder.reinit()?;
                *ended = false;
            }
            *ended = decoder.decode(&mut input, &mut output)?;
        }
        let flushed = decoder.flush(&mut output)?;
        let wrote = output.written().len();
        out.extend_from_slice(output.written());
        if input.unwritten().is_empty() && flushed {
            return Ok(());
        }
        if wrote == 0 && input.written().len() == read && !*ended {
            return Err(std::io::Error::other("the decoder made no progress"));
        }
    }
}

/// The publish time in `t=<nanos>;…` or `{"t":<nanos>,…`, if any.
fn stamp(data: &[u8]) -> Option<u128> {
    let digits = data
        .strip_prefix(b"t=")
        .or_else(|| data.strip_prefix(b"{\"t\":"))?;
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[derive(Default)]
struct SubState {
    hist: RefCell<Option<Histogram<u64>>>,
    delivered: Cell<u64>,
    errors: Cell<u64>,
    established: Cell<u64>,
    closed: Cell<u64>,
    caught_up: Cell<u64>,
    catch_up_max: Cell<Duration>,
    /// Connections that have received at least one event (never reset).
    receiving: Cell<u64>,
    /// Events whose data did not name the connection's own topic (never reset).
    misrouted: Cell<u64>,
    /// Body bytes as they came, before decoding.
    body_bytes: Cell<u64>,
    /// Events each connection has received since it opened (never reset).
    per_connection: Box<[Cell<u64>]>,
    /// Events whose id was not above the one before on their connection (never reset): sent
    /// twice, or out of order. See [`id_order`].
    out_of_order: Cell<u64>,
}

impl SubState {
    fn record(&self, data: &[u8]) {
        self.delivered.set(self.delivered.get() + 1);
        if let Some(t) = stamp(data) {
            let us = (now_nanos().saturating_sub(t) / 1000) as u64;
            if let Some(h) = self.hist.borrow_mut().as_mut() {
                h.saturating_record(us.max(1));
            }
        }
    }

    /// How many connections received each number of events, since they opened: `{"COUNT":
    /// CONNECTIONS, …}`.
    fn events_per_connection(&self) -> serde_json::Value {
        let mut counts = std::collections::BTreeMap::<u64, u64>::new();
        for c in &self.per_connection {
            *counts.entry(c.get()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(events, conns)| (events.to_string(), serde_json::Value::from(conns)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    fn write_report(&self, path: &str, connections: u64, reset: bool) {
        let hist = self
            .hist
            .borrow_mut()
            .replace(new_hist())
            .unwrap_or_else(new_hist);
        let q = |q: f64| {
            if hist.is_empty() {
                0
            } else {
                hist.value_at_quantile(q)
            }
        };
        let report = serde_json::json!({
            "connections": connections,
            "established": self.established.get(),
            "closed_by_server": self.closed.get(),
            "errors": self.errors.get(),
            "delivered": self.delivered.get(),
            "count": hist.len(),
            "p50_us": q(0.5),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": if hist.is_empty() { 0 } else { hist.max() },
            "caught_up": self.caught_up.get(),
            "catch_up_max_ms": self.catch_up_max.get().as_secs_f64() * 1000.0,
            "receiving": self.receiving.get(),
            "misrouted": self.misrouted.get(),
            "body_bytes": self.body_bytes.get(),
            "events_per_connection": self.events_per_connection(),
            "out_of_order": self.out_of_order.get(),
        });
        let mut bytes = Vec::new();
        let _ = V2Serializer::new().serialize(&hist, &mut bytes);
        let _ = std::fs::write(format!("{path}.hist"), bytes);
        let tmp = format!("{path}.tmp");
        let _ = std::fs::write(&tmp, report.to_string());
        let _ = std::fs::rename(&tmp, path);
        if reset {
            self.delivered.set(0);
            self.body_bytes.set(0);
        }
    }
}

async fn subscribe(opts: &Opts) -> i32 {
    let url = opts.get("url").expect("--url").clone();
    // Several URLs, comma-separated: connection `K + i` opens the `(K + i) % count`th.
    let targets: Vec<(SocketAddr, String, String)> = url.split(',').map(parse_url).collect();
    let n: u64 = opt(opts, "connections", 1);
    let report = opts
        .get("report")
        .cloned()
        .unwrap_or_else(|| "subscribe.json".into());
    let duration = Duration::from_secs_f64(opt(opts, "duration", 600.0));
    let expect: u64 = opt(opts, "expect", 0);
    let ips = source_ips(opts);
    let first: u64 = opt(opts, "first", 0);
    let mut extra = String::new();
    if let Some(id) = opts.get("last-event-id") {
        extra.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    let asked = opts.get("accept-encoding").cloned();
    if let Some(coding) = &asked {
        extra.push_str(&format!("Accept-Encoding: {coding}\r\n"));
    }
    let request_for = |path: &str, host: &str| -> Rc<[u8]> {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{extra}\r\n")
            .into_bytes()
            .into()
    };
    let shared: Vec<Rc<[u8]>> = targets
        .iter()
        .map(|(_, path, host)| request_for(path, host))
        .collect();
    let state = Rc::new(SubState {
        per_connection: (0..n).map(|_| Cell::new(0)).collect(),
        ..SubState::default()
    });
    *state.hist.borrow_mut() = Some(new_hist());
    let sem = Rc::new(Semaphore::new(opt(opts, "connect-concurrency", 256)));
    let done = Rc::new(Notify::new());
    let start = Instant::now();
    for i in 0..n {
        let which = ((first + i) % targets.len() as u64) as usize;
        let (addr, path, host) = &targets[which];
        let addr = *addr;
        // With a topic per connection: its request, and the `;TOPIC;` its events' data names.
        let (request, mark) = if path.contains("{i}") {
            let own = path.replace("{i}", &(first + i).to_string());
            let topic = own.rsplit('/').next().unwrap_or_default();
            let mark = format!(";{topic};").into_bytes();
            (request_for(&own, host), Some(mark))
        } else {
            (shared[which].clone(), None)
        };
        let (state, sem, done) = (state.clone(), sem.clone(), done.clone());
        let asked = asked.clone();
        let src = ips[i as usize % ips.len()];
        tokio::task::spawn_local(async move {
            let permit = sem.acquire().await;
            let result = async {
                let mut stream = connect(addr, src).await?;
                stream.write_all(&request).await?;
                let mut buf = Vec::new();
                let (status, chunked, rest, coding) = read_head(&mut stream, &mut buf).await?;
                if status != 200 {
                    return Err(std::io::Error::other(format!("status {status}")));
                }
                if let Some(asked) = asked.as_deref()
                    && !coding.as_deref().is_some_and(|c| accepts(asked, c))
                {
                    return Err(std::io::Error::other(format!(
                        "asked for {asked}, answered in Content-Encoding {coding:?}"
                    )));
                }
                state.established.set(state.established.get() + 1);
                drop(permit);
                ready_check(&state, n);
                let mut reader = SseReader::new(chunked).decoding(coding.as_deref())?;
                // The events this connection received.
                let mine = &state.per_connection[i as usize];
                let mut last_id: Option<IdKey> = None;
                let mut tmp = vec![0u8; 4096];
                let mut data = rest;
                loop {
                    let fed = reader.feed_events(&data, |id, d| {
                        state.record(d);
                        if mine.get() == 0 {
                            state.receiving.set(state.receiving.get() + 1);
                        }
                        if mark.as_ref().is_some_and(|m| find(d, m).is_none()) {
                            state.misrouted.set(state.misrouted.get() + 1);
                        }
                        if let Some(key) = id {
                            if last_id.is_some_and(|last| key <= last) {
                                state.out_of_order.set(state.out_of_order.get() + 1);
                            }
                            last_id = Some(key);
                        }
                        mine.set(mine.get() + 1);
                    });
                    state
                        .body_bytes
                        .set(state.body_bytes.get() + std::mem::take(&mut reader.body_bytes));
                    fed?;
                    if expect > 0 && mine.get() >= expect {
                        state.caught_up.set(state.caught_up.get() + 1);
                        state
                            .catch_up_max
                            .set(state.catch_up_max.get().max(start.elapsed()));
                        if state.caught_up.get() + state.errors.get() >= n {
                            done.notify_one();
                        }
                        return Ok(());
                    }
                    if reader.eof {
                        break;
                    }
                    let k = stream.read(&mut tmp).await?;
                    if k == 0 {
                        break;
                    }
                    data = tmp[..k].to_vec();
                }
                state.closed.set(state.closed.get() + 1);
                Ok::<(), std::io::Error>(())
            }
            .await;
            if let Err(err) = result {
                if state.errors.get() < 3 {
                    eprintln!("loadgen subscribe: {err}");
                }
                state.errors.set(state.errors.get() + 1);
                ready_check(&state, n);
                if expect > 0 && state.caught_up.get() + state.errors.get() >= n {
                    done.notify_one();
                }
            }
        });
    }
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM");
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1");
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    let mut k = 0;
    loop {
        tokio::select! {
            _ = usr1.recv() => {
                k += 1;
                state.write_report(&format!("{report}.{k}.json"), n, true);
            }
            _ = term.recv() => break,
            () = &mut deadline => break,
            () = done.notified() => break,
        }
    }
    state.write_report(&report, n, false);
    0
}

/// An event id as it orders (see [`id_order`]): the length of its head, the head, its sequence
/// number. Copied, not allocated: it is read for every event.
type IdKey = (usize, [u8; ID_HEAD], u64);

/// The longest head of an id that [`id_order`] orders.
const ID_HEAD: usize = 24;

/// Where `id` stands in its topic's order, if it has the form `HEAD-SEQ` or `SEQ` that
/// tower-sse's ids have (`MS-SEQ` on Redis, a fixed-width hex epoch and a sequence number in
/// memory): HEAD, a number without leading zeros or of fixed width, compared by length and then
/// byte by byte, then SEQ as a number. `None` for any other id, which is not checked.
fn id_order(id: &[u8]) -> Option<IdKey> {
    let (head, seq) = match id.iter().rposition(|&b| b == b'-') {
        Some(i) => (&id[..i], &id[i + 1..]),
        None => (&id[..0], id),
    };
    if seq.is_empty() || !seq.iter().all(u8::is_ascii_digit) || head.len() > ID_HEAD {
        return None;
    }
    let seq = std::str::from_utf8(seq).ok()?.parse().ok()?;
    let mut bytes = [0; ID_HEAD];
    bytes[..head.len()].copy_from_slice(head);
    Some((head.len(), bytes, seq))
}

/// Whether the `Accept-Encoding` value `asked` names the content coding `coding` (other than
/// with `q=0`).
fn accepts(asked: &str, coding: &str) -> bool {
    asked.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| q == 0.0)
        });
        name.eq_ignore_ascii_case(coding) && !refused
    })
}

fn ready_check(state: &SubState, n: u64) {
    if state.established.get() + state.errors.get() == n {
        println!("ready {} {}", state.established.get(), state.errors.get());
        let _ = std::io::stdout().flush();
    }
}

/// Reads one response with a Content-Length (or a chunked one); returns (status, body).
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let (body_start, head, status) = head(stream, buf).await?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body_end = match length {
        Some(len) => {
            while buf.len() < body_start + len {
                fill(stream, buf).await?;
            }
            body_start + len
        }
        None if head.contains("transfer-encoding: chunked") => loop {
            if let Some(i) = find(&buf[body_start..], b"0\r\n\r\n") {
                break body_start + i + 5;
            }
            fill(stream, buf).await?;
        },
        None => body_start,
    };
    let body = buf[body_start..body_end].to_vec();
    buf.drain(..body_end);
    Ok((status, body))
}

/// The id of a published event from the publish reply: the whole body (tower-sse answers the
/// id), or the `last message id: …` line of nchan's channel info.
fn published_id(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .find_map(|line| line.trim().strip_prefix("last message id:"))
        .unwrap_or(&text)
        .trim()
        .to_owned()
}

/// Publishes to `--topic` (or the path of `--url`) at `--rate` per second (0: as fast as the
/// answers come), with `--in-flight` requests outstanding at most (default 1), each on a
/// keep-alive connection of its own. Several base URLs, comma-separated, take the requests in
/// turn: request `j` (counted from 0) goes to the `j % count`th.
async fn publish(opts: &Opts) -> i32 {
    let urls = opts.get("url").expect("--url").clone();
    let targets: Rc<[(SocketAddr, String, String)]> = urls
        .split(',')
        .map(|url| match opts.get("topic") {
            Some(topic) => parse_url(&format!("{}/publish/{topic}", url.trim_end_matches('/'))),
            None => parse_url(url),
        })
        .collect();
    let rate: f64 = opt(opts, "rate", 10.0);
    let size: usize = opt(opts, "size", 64);
    let duration = Duration::from_secs_f64(opt(opts, "duration", 10.0));
    let count: u64 = opt(opts, "count", u64::MAX);
    let json = opts.get("data").is_some_and(|d| d == "json");
    let in_flight: u64 = opt::<u64>(opts, "in-flight", 1).max(1);
    // One ticker for all the requests in flight: the rate is theirs together.
    let ticker = (rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Rc::new(tokio::sync::Mutex::new(t))
    });
    // The next request's number; requests answered, answered with 2xx, failed.
    let next = Rc::new(Cell::new(0u64));
    let (sent, accepted, errors) = (
        Rc::new(Cell::new(0u64)),
        Rc::new(Cell::new(0u64)),
        Rc::new(Cell::new(0u64)),
    );
    // The id answered to the first request that was accepted, and that request's number.
    let first_id = Rc::new(RefCell::new(None::<(u64, String)>));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (targets, ticker, next) = (targets.clone(), ticker.clone(), next.clone());
        let (sent, accepted, errors) = (sent.clone(), accepted.clone(), errors.clone());
        let first_id = first_id.clone();
        tasks.push(tokio::task::spawn_local(async move {
            // This task's connection to each target, opened when first needed.
            let mut conns: Vec<Option<TcpStream>> = targets.iter().map(|_| None).collect();
            let mut buf = Vec::new();
            while next.get() < count && start.elapsed() < duration {
                if let Some(t) = &ticker {
                    t.lock().await.tick().await;
                }
                let j = next.get();
                if j >= count {
                    return;
                }
                next.set(j + 1);
                let which = (j % targets.len() as u64) as usize;
                let (addr, path, host) = &targets[which];
                let stream = match &mut conns[which] {
                    Some(stream) => stream,
                    slot => match connect(*addr, "127.0.0.1".parse().unwrap()).await {
                        Ok(stream) => slot.insert(stream),
                        Err(_) => {
                            errors.set(errors.get() + 1);
                            return;
                        }
                    },
                };
                let data = if json {
                    json_data(size, j)
                } else {
                    event_data(size, "")
                };
                let mut request = Vec::new();
                post(&mut request, path, host, &data);
                if stream.write_all(&request).await.is_err() {
                    errors.set(errors.get() + 1);
                    return;
                }
                match read_response(stream, &mut buf).await {
                    Ok((status, body)) if (200..300).contains(&status) => {
                        accepted.set(accepted.get() + 1);
                        let mut first = first_id.borrow_mut();
                        if first.as_ref().is_none_or(|(k, _)| j < *k) {
                            *first = Some((j, published_id(&body)));
                        }
                    }
                    Ok(_) => errors.set(errors.get() + 1),
                    Err(_) => {
                        errors.set(errors.get() + 1);
                        return;
                    }
                }
                sent.set(sent.get() + 1);
            }
        }));
    }
    let elapsed = finish(tasks, start).await;
    let first_id = first_id.borrow().clone().map(|(_, id)| id);
    println!(
        "{}",
        serde_json::json!({"published": sent.get(), "accepted": accepted.get(),
            "errors": errors.get(), "elapsed_s": elapsed,
            "per_s": accepted.get() as f64 / elapsed,
            "first_id": first_id.unwrap_or_default()})
    );
    i32::from(errors.get() > 0)
}

/// Waits for every task; returns the seconds since `start`.
async fn finish(tasks: Vec<tokio::task::JoinHandle<()>>, start: Instant) -> f64 {
    for t in tasks {
        let _ = t.await;
    }
    start.elapsed().as_secs_f64()
}

/// Event data of `size` bytes (at least its stamp): `t=<unix nanos>;` then `tag` (if any)
/// and `x` padding.
fn event_data(size: usize, tag: &str) -> String {
    let mut body = format!("t={};{tag}", now_nanos());
    while body.len() < size {
        body.push('x');
    }
    body
}

/// A JSON object of at least `size` bytes (when `size` allows one line item): `{"t":<unix
/// nanos>,…}`, an order whose line items have varied values, so that it compresses about as
/// real JSON does (some 2.5 to 3 times with gzip), not as padding does.
fn json_data(size: usize, seq: u64) -> String {
    // xorshift64*, seeded by the clock: values differ from event to event and run to run.
    let mut state = (now_nanos() as u64) | 1;
    let mut next = move |below: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    };
    const WORDS: [&str; 8] = [
        "standard", "express", "pending", "shipped", "gift", "bulk", "return", "priority",
    ];
    let mut body = format!(
        "{{\"t\":{},\"seq\":{seq},\"type\":\"order.updated\",\"order\":{{\"id\":\"ord_{:012x}\",\"customer\":{{\"id\":{},\"name\":\"customer {}\",\"tier\":\"{}\"}},\"items\":[",
        now_nanos(),
        next(1 << 48),
        next(1_000_000),
        next(100_000),
        WORDS[next(8) as usize],
    );
    let mut first = true;
    while body.len() + 30 < size || first {
        if !first {
            body.push(',');
        }
        first = false;
        let _ = std::fmt::Write::write_fmt(
            &mut body,
            format_args!(
                "{{\"sku\":\"SKU-{:05}\",\"qty\":{},\"price\":{}.{:02},\"note\":\"{}\"}}",
                next(100_000),
                1 + next(9),
                next(500),
                next(100),
                WORDS[next(8) as usize],
            ),
        );
    }
    body.push_str("]}}");
    body
}

/// Appends `POST path` with `body` to `out`.
fn post(out: &mut Vec<u8>, path: &str, host: &str, body: &str) {
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// One event to each of `--topics N` topics over keep-alive connections, pipelined.
async fn publish_many(opts: &Opts) -> i32 {
    let url = opts.get("url").expect("--url").clone();
    let (addr, base, host) = parse_url(&url);
    let base = base.trim_end_matches('/').to_owned();
    let topics: u64 = opt(opts, "topics", 1);
    let first: u64 = opt(opts, "first", 0);
    let prefix = opts.get("prefix").cloned().unwrap_or_else(|| "m".into());
    let conns: u64 = opt(opts, "connections", 64);
    let depth: u64 = opt::<u64>(opts, "pipeline", 1).max(1);
    let size: usize = opt(opts, "size", 64);
    let duration = Duration::from_secs_f64(opt(opts, "duration", 600.0));
    // The next topic (counted from 0) that no connection has taken yet.
    let next = Rc::new(Cell::new(0u64));
    let published = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns.min(topics) {
        let (next, published, errors) = (next.clone(), published.clone(), errors.clone());
        let (base, host, prefix) = (base.clone(), host.clone(), prefix.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let Ok(mut stream) = connect(addr, "127.0.0.1".parse().unwrap()).await else {
                errors.set(errors.get() + 1);
                return;
            };
            let (mut buf, mut batch) = (Vec::new(), Vec::new());
            while next.get() < topics && start.elapsed() < duration {
                let (from, to) = (next.get(), (next.get() + depth).min(topics));
                next.set(to);
                batch.clear();
                for i in from..to {
                    let topic = format!("{prefix}{}", first + i);
                    let data = event_data(size, &format!("{topic};"));
                    post(&mut batch, &format!("{base}/publish/{topic}"), &host, &data);
                }
                let mut answered = 0;
                if stream.write_all(&batch).await.is_ok() {
                    while answered < to - from {
                        match read_response(&mut stream, &mut buf).await {
                            Ok((status, _)) if (200..300).contains(&status) => {
                                published.set(published.get() + 1);
                            }
                            Ok(_) => errors.set(errors.get() + 1),
                            Err(_) => break,
                        }
                        answered += 1;
                    }
                }
                if answered < to - from {
                    // The connection failed: what it did not answer is lost.
                    errors.set(errors.get() + (to - from - answered));
                    return;
                }
            }
        }));
    }
    let elapsed = finish(tasks, start).await;
    println!(
        "{}",
        serde_json::json!({"published": published.get(), "errors": errors.get(),
            "elapsed_s": elapsed, "per_s": published.get() as f64 / elapsed})
    );
    i32::from(errors.get() > 0 || published.get() < topics)
}

async fn plain(opts: &Opts) -> i32 {
    let url = opts.get("url").expect("--url").clone();
    let (addr, path, host) = parse_url(&url);
    let conns: usize = opt(opts, "connections", 50);
    let duration = Duration::from_secs_f64(opt(opts, "duration", 5.0));
    let request: Rc<[u8]> = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
        .into_bytes()
        .into();
    let count = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (request, count, errors) = (request.clone(), count.clone(), errors.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let Ok(mut stream) = connect(addr, "127.0.0.1".parse().unwrap()).await else {
                errors.set(errors.get() + 1);
                return;
            };
            let mut buf = Vec::new();
            while start.elapsed() < duration {
                if stream.write_all(&request).await.is_err() {
                    errors.set(errors.get() + 1);
                    return;
                }
                match read_response(&mut stream, &mut buf).await {
                    Ok((200, _)) => count.set(count.get() + 1),
                    _ => {
                        errors.set(errors.get() + 1);
                        return;
                    }
                }
            }
        }));
    }
    let elapsed = finish(tasks, start).await;
    println!(
        "{}",
        serde_json::json!({"requests": count.get(), "errors": errors.get(),
            "rps": count.get() as f64 / elapsed, "elapsed_s": elapsed})
    );
    i32::from(count.get() == 0)
}

async fn churn(opts: &Opts) -> i32 {
    let url = opts.get("url").expect("--url").clone();
    let (addr, path, host) = parse_url(&url);
    let conc: usize = opt(opts, "concurrency", 20);
    let duration = Duration::from_secs_f64(opt(opts, "duration", 5.0));
    let ips = source_ips(opts);
    let request: Rc<[u8]> =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
            .into_bytes()
            .into();
    let cycles = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let hist = Rc::new(RefCell::new(new_hist()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conc {
        let (request, cycles, errors, hist, ips) = (
            request.clone(),
            cycles.clone(),
            errors.clone(),
            hist.clone(),
            ips.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut j = i;
            while start.elapsed() < duration {
                j += conc;
                let began = Instant::now();
                let one = async {
                    let mut stream = connect(addr, ips[j % ips.len()]).await?;
                    stream.write_all(&request).await?;
                    let mut buf = Vec::new();
                    let (status, chunked, rest, _) = read_head(&mut stream, &mut buf).await?;
                    if status != 200 {
                        return Err(std::io::Error::other(format!("status {status}")));
                    }
                    let mut reader = SseReader::new(chunked);
                    let mut got = false;
                    let mut data = rest;
                    let mut tmp = [0u8; 4096];
                    loop {
                        reader.feed(&data, |_| got = true)?;
                        if got {
                            return Ok(());
                        }
                        let k = stream.read(&mut tmp).await?;
                        if k == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        data = tmp[..k].to_vec();
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) => {
                        cycles.set(cycles.get() + 1);
                        hist.borrow_mut()
                            .saturating_record(began.elapsed().as_micros() as u64);
                    }
                    _ => errors.set(errors.get() + 1),
                }
            }
        }));
    }
    let elapsed = finish(tasks, start).await;
    let h = hist.borrow();
    println!(
        "{}",
        serde_json::json!({"cycles": cycles.get(), "errors": errors.get(),
            "per_s": cycles.get() as f64 / elapsed, "elapsed_s": elapsed,
            "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99)})
    );
    i32::from(cycles.get() == 0)
}

/// Connections that never read (`--half-head`: that never finish their request head).
async fn stall(opts: &Opts) -> i32 {
    let url = opts.get("url").expect("--url").clone();
    let (addr, path, host) = parse_url(&url);
    let n: u64 = opt(opts, "connections", 1);
    let rcvbuf: Option<u32> = opts.get("rcvbuf").and_then(|v| v.parse().ok());
    let half = opts.contains_key("half-head");
    let duration = Duration::from_secs_f64(opt(opts, "duration", 600.0));
    let ips = source_ips(opts);
    let request: Rc<[u8]> = if half {
        format!("GET {path} HTTP/1.1\r\nHo").into_bytes().into()
    } else {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
            .into_bytes()
            .into()
    };
    let state = Rc::new(SubState::default());
    let sem = Rc::new(Semaphore::new(opt(opts, "connect-concurrency", 256)));
    for i in 0..n {
        let (request, state, sem) = (request.clone(), state.clone(), sem.clone());
        let src = ips[i as usize % ips.len()];
        tokio::task::spawn_local(async move {
            let permit = sem.acquire().await;
            let opened = async {
                let sock = TcpSocket::new_v4()?;
                if let Some(bytes) = rcvbuf {
                    sock.set_recv_buffer_size(bytes)?;
                }
                sock.bind(SocketAddr::new(src, 0))?;
                let mut stream = sock.connect(addr).await?;
                stream.set_nodelay(true)?;
                stream.write_all(&request).await?;
                if !half {
                    let mut buf = Vec::new();
                    let (_, _, status) = head(&mut stream, &mut buf).await?;
                    if status != 200 {
                        return Err(std::io::Error::other(format!("status {status}")));
                    }
                }
                Ok::<_, std::io::Error>(stream)
            }
            .await;
            drop(permit);
            match opened {
                Ok(stream) => {
                    state.established.set(state.established.get() + 1);
                    ready_check(&state, n);
                    // Never read again; hold the socket until the process exits.
                    std::future::pending::<()>().await;
                    drop(stream);
                }
                Err(err) => {
                    if state.errors.get() < 3 {
                        eprintln!("loadgen stall: {err}");
                    }
                    state.errors.set(state.errors.get() + 1);
                    ready_check(&state, n);
                }
            }
        });
    }
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        () = tokio::time::sleep(duration) => {}
    }
    println!(
        "{}",
        serde_json::json!({"connections": n, "established": state.established.get(),
            "errors": state.errors.get()})
    );
    let _ = std::io::stdout().flush();
    0
}

#[cfg(test)]
mod tests {
    //! The reader against what the layer sends: every event of a compressed stream, per stream
    //! and shared, whichever way the bytes are cut.

    use std::convert::Infallible;

    use axum::response::IntoResponse as _;
    use futures_util::StreamExt as _;
    use tower::{Layer as _, ServiceExt as _};
    use tower_sse::layer::Compression;
    use tower_sse::{Event, EventStream, SseLayer};

    use super::*;

    /// The frames of a finished event stream of `events` from `layer`, asking for `coding`, and
    /// the response's `Content-Encoding`.
    fn frames(layer: &SseLayer, coding: &str, events: &[Event]) -> (Vec<Vec<u8>>, Option<String>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let events = events.to_vec();
        let service = layer.layer(tower::service_fn(move |_: http::Request<()>| {
            let events = events.clone();
            async move {
                let stream = futures_util::stream::iter(events);
                Ok::<_, Infallible>(EventStream::new(stream).into_response())
            }
        }));
        let request = http::Request::get("/events/zip")
            .header(http::header::ACCEPT, "text/event-stream")
            .header(http::header::ACCEPT_ENCODING, coding)
            .body(())
            .unwrap();
        let response = rt.block_on(service.oneshot(request)).unwrap();
        let encoded = response
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned());
        let mut body = axum::body::Body::new(response.into_body()).into_data_stream();
        let mut frames = Vec::new();
        rt.block_on(async {
            while let Some(frame) = body.next().await {
                frames.push(frame.expect("the body").to_vec());
            }
        });
        (frames, encoded)
    }

    /// `frames` as HTTP/1.1 chunks, one each, and the last chunk.
    fn chunked(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for frame in frames.iter().filter(|f| !f.is_empty()) {
            wire.extend_from_slice(format!("{:x}\r\n", frame.len()).as_bytes());
            wire.extend_from_slice(frame);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    /// The data of each event `wire` holds, fed to a reader `cut` bytes at a time.
    fn read(wire: &[u8], coding: &str, cut: usize) -> std::io::Result<Vec<String>> {
        let mut reader = SseReader::new(true).decoding(Some(coding))?;
        let mut data = Vec::new();
        for piece in wire.chunks(cut) {
            reader.feed(piece, |d| {
                data.push(String::from_utf8_lossy(d).into_owned())
            })?;
        }
        assert!(reader.eof, "the last chunk is read");
        assert_eq!(reader.body_bytes as usize, wire.len() - count_framing(wire));
        Ok(data)
    }

    /// The bytes of chunked framing in `wire` (sizes and CRLFs), for the body's byte count.
    fn count_framing(wire: &[u8]) -> usize {
        let (mut pos, mut framing) = (0, 0);
        loop {
            let line = find(&wire[pos..], b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&wire[pos..pos + line]).unwrap(), 16)
                    .unwrap();
            framing += line + 4;
            pos += line + 2 + size + 2;
            if size == 0 {
                return framing;
            }
        }
    }

    /// 1 KiB JSON events, the same in every run.
    fn events() -> Vec<Event> {
        (0..40u64)
            .map(|seq| {
                let items: Vec<String> = (0..24)
                    .map(|i| {
                        let v = (seq * 7919 + i * 104_729) % 100_000;
                        format!(
                            "{{\"sku\":\"SKU-{v:05}\",\"qty\":{},\"price\":{}}}",
                            v % 9,
                            v % 500
                        )
                    })
                    .collect();
                Event::builder()
                    .id(seq.to_string())
                    .data(format!("{{\"seq\":{seq},\"items\":[{}]}}", items.join(",")))
                    .build()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_event_of_a_compressed_stream_is_read_per_stream_and_shared() {
        let events = events();
        let want: Vec<String> = events
            .iter()
            .map(|e| {
                let text = String::from_utf8(e.as_bytes().to_vec()).unwrap();
                let line = text.lines().find(|l| l.starts_with("data: ")).unwrap();
                line["data: ".len()..].to_owned()
            })
            .collect();
        for (mode, compression) in [
            ("per stream", Compression::new().per_stream()),
            ("shared", Compression::new()),
        ] {
            let layer = SseLayer::new().compression(compression);
            for coding in ["gzip", "br", "zstd"] {
                let (frames, encoded) = frames(&layer, coding, &events);
                assert_eq!(encoded.as_deref(), Some(coding), "{mode}");
                let wire = chunked(&frames);
                // Whole (a zstd stream's frames, one after another, in one read), in odd
                // slices, and byte by byte.
                for cut in [wire.len(), 7, 1] {
                    let got = read(&wire, coding, cut)
                        .unwrap_or_else(|e| panic!("{mode} {coding}, cut {cut}: {e}"));
                    assert_eq!(got, want, "{mode} {coding}, cut {cut}");
                }
            }
        }
    }

    #[test]
    fn a_body_that_does_not_decode_is_an_error() {
        let layer = SseLayer::new().compression(Compression::new());
        for coding in ["gzip", "br", "zstd"] {
            let (mut frames, _) = frames(&layer, coding, &events());
            // A frame in the middle that no decoder reads: a deflate block of the reserved
            // type, a Brotli last block with padding that is not zero, no zstd frame's magic.
            frames[2] = vec![0xff; 16];
            assert!(
                read(&chunked(&frames), coding, 4096).is_err(),
                "{coding}: a corrupt body is an error"
            );
        }
        assert!(SseReader::new(true).decoding(Some("compress")).is_err());
        // Bytes after the end of a Brotli body.
        let (mut frames, _) = frames(&layer, "br", &events()[..1]);
        frames.push(b"more".to_vec());
        assert!(read(&chunked(&frames), "br", 4096).is_err());
    }

    #[test]
    fn each_data_line_comes_with_its_event_s_id() {
        let mut reader = SseReader::new(false);
        let mut got = Vec::new();
        let body = b"id: 1-2\ndata: a\n\n: keep-alive\n\ndata: b\n\nid: 1-10\ndata: c\n\n";
        // Cut in two inside the second id, as a read may cut it.
        for piece in [&body[..30], &body[30..]] {
            reader
                .feed_events(piece, |id, d| got.push((id, d.to_vec())))
                .unwrap();
        }
        let want = [(Some("1-2"), "a"), (None, "b"), (Some("1-10"), "c")].map(|(id, d)| {
            (
                id.and_then(|i| id_order(i.as_bytes())),
                d.as_bytes().to_vec(),
            )
        });
        assert_eq!(got, want);
    }

    #[test]
    fn ids_order_as_the_hub_gives_them() {
        let order = |id: &str| id_order(id.as_bytes()).unwrap();
        // Redis stream ids: the milliseconds, then the sequence, as numbers.
        assert!(order("1796222580657-1") < order("1796222580657-2"));
        assert!(order("1796222580657-9") < order("1796222580657-10"));
        assert!(order("999-5") < order("1000-0"));
        // The memory backend's: a fixed-width hex epoch, then the sequence.
        assert!(order("00000000000a-9") < order("00000000000a-10"));
        assert!(order("7") < order("12"));
        assert_eq!(order("3-4"), order("3-4"));
        for other in ["", "abc", "1-2:end", "1-", "1-x"] {
            assert_eq!(id_order(other.as_bytes()), None, "{other:?}");
        }
    }

    #[test]
    fn the_coding_asked_for_is_the_one_accepted() {
        assert!(accepts("gzip", "gzip"));
        assert!(accepts("zstd, gzip;q=0.5", "gzip"));
        assert!(accepts("BR", "br"));
        assert!(!accepts("gzip", "br"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("zstd", "zstd-shared"));
    }
}
