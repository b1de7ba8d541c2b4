//! The floor (issue 15): what serving the harness's event streams costs with nothing between the
//! server and the kernel. One thread on raw Linux `epoll` (edge-triggered), no runtime, no HTTP
//! library. It speaks what the other servers speak to `loadgen`: `GET /events/{topic}` answers
//! `200` with `content-type: text/event-stream` and `transfer-encoding: chunked`, then chunks;
//! `POST /publish/{topic}` encodes its body as one SSE event ONCE, already framed as one HTTP
//! chunk (`{len:x}\r\n`, `data: …\n\n`, `\r\n`), `write()`s those same bytes to every subscriber
//! of the topic, and answers `200` with an empty body, as the baseline does; `GET /plain` answers
//! `hello\n`. Env: `ADDR` (`WORKERS` does not apply: it has one thread).
//!
//! What it leaves out, on purpose: ids, history and replay (the run's `replay: false`),
//! keep-alive comments, compression, timeouts. As in the baseline, a topic exists while it has
//! subscribers, and a publish to a topic without any is answered and dropped, so it has nothing
//! to expire. A topic is its path segment as sent (not percent-decoded).
//!
//! Minimal but correct: HTTP/1.1 keep-alive (pipelined requests too) for publishers and
//! `/plain`; a subscriber whose socket would block gets the unsent rest queued, up to
//! [`QUEUE_LIMIT`], past which it is dropped; a closed socket is removed from its topic; a
//! request it cannot read is answered `400` (`413` past [`BODY_LIMIT`]) and closed; nothing a
//! client sends makes it panic.

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::rc::Rc;

use tower_sse_bench::find;

/// Bytes a connection may have queued (written by the server, not yet taken by its socket);
/// past this a subscriber is dropped, as a client that stopped reading.
const QUEUE_LIMIT: usize = 1 << 20;
/// The longest request head read; a longer one is a bad request.
const HEAD_LIMIT: usize = 16 * 1024;
/// The largest request body read; a larger one is answered `413` and closed.
const BODY_LIMIT: usize = 1 << 20;
/// The listen backlog: tokio's listener (mio) asks for 1024, the other servers of this crate
/// have that.
const BACKLOG: i32 = 1024;
/// Events taken from the kernel per `epoll_wait`.
const EVENTS: usize = 1024;
/// The listener's epoll token; a connection's is its slot.
const LISTENER: u64 = u64::MAX;

const PLAIN: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 6\r\n\r\nhello\n";
const PUBLISHED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
const STREAM: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
const ONLY_GET: &[u8] =
    b"HTTP/1.1 405 Method Not Allowed\r\nallow: GET\r\ncontent-length: 0\r\n\r\n";
const ONLY_POST: &[u8] =
    b"HTTP/1.1 405 Method Not Allowed\r\nallow: POST\r\ncontent-length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
/// An event stream asked for over HTTP/1.0, which has no chunked bodies.
const NOT_HTTP_1_1: &[u8] =
    b"HTTP/1.1 505 HTTP Version Not Supported\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(tower_sse_bench::addr())?;
    println!("listening on http://{}", listener.local_addr()?);
    Floor::new(listener)?.run()
}

/// The value of a libc call that returns -1 on error, or that error.
fn cvt(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An epoll instance.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: no pointers; the fd returned is new and owned by nothing else.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is an open descriptor that only this value owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for `events`, reported with `token`.
    fn add(&self, fd: RawFd, events: libc::c_int, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event for the length of the call.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) })
            .map(drop)
    }

    /// Waits for events; how many of `events` it filled.
    fn wait(&self, events: &mut [libc::epoll_event]) -> std::io::Result<usize> {
        let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: the kernel writes at most `max` events into `events`, which holds as many.
        let n = cvt(unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, -1) })?;
        Ok(n as usize)
    }
}

/// A connection: an HTTP/1.1 client (a publisher, `/plain`) until it asks for an event stream,
/// then a subscriber.
struct Conn {
    stream: TcpStream,
    /// Bytes read that do not make a whole request yet (empty, and freed, for a subscriber).
    input: Vec<u8>,
    /// Bytes written to it that its socket did not take yet, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    role: Role,
    /// Close once `out` is written: after an error answer, `Connection: close`, or the end of
    /// its input.
    close_when_written: bool,
}

enum Role {
    Http,
    /// A subscriber of `topic`, at `at` in its list of subscribers.
    Subscriber {
        topic: Rc<[u8]>,
        at: usize,
    },
}

impl Conn {
    /// Bytes queued, not yet taken by the socket.
    fn queued(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes `bytes` after what is queued, queueing what the socket does not take; `false` if
    /// the socket failed or the queue would pass [`QUEUE_LIMIT`]: the connection is to be
    /// dropped.
    fn send(&mut self, mut bytes: &[u8]) -> bool {
        if self.queued() == 0 {
            match write_some(&self.stream, bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(_) => return false,
            }
            if bytes.is_empty() {
                return true;
            }
        }
        if self.queued() + bytes.len() > QUEUE_LIMIT {
            return false;
        }
        if self.sent > 0 && self.sent >= self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        self.out.extend_from_slice(bytes);
        true
    }

    /// Writes what is queued, as far as the socket takes it; `false` if the socket failed.
    fn flush(&mut self) -> bool {
        if self.queued() == 0 {
            return true;
        }
        match write_some(&self.stream, &self.out[self.sent..]) {
            Ok(n) => self.sent += n,
            Err(_) => return false,
        }
        if self.queued() == 0 {
            // Free the queue: an idle connection holds no buffer.
            self.out = Vec::new();
            self.sent = 0;
        }
        true
    }
}

/// Writes as much of `bytes` as the socket takes now (until it would block): how much.
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// The server: the listener, the connections in slots, the topics.
struct Floor {
    listener: TcpListener,
    epoll: Epoll,
    conns: Vec<Option<Conn>>,
    /// Free slots.
    free: Vec<usize>,
    /// Slots freed while handling the current batch of events: free only after it, so that an
    /// event of the batch for a socket closed meanwhile cannot reach a new one in its slot.
    freed: Vec<usize>,
    /// Each topic's subscribers (slots); a topic without any is removed.
    topics: HashMap<Rc<[u8]>, Vec<usize>>,
    /// What each read lands in first.
    buf: Box<[u8]>,
    /// Accept errors printed so far (the first few are).
    accept_errors: u32,
}

/// What a connection's input asked for, once its whole requests are answered.
enum Next {
    /// Wait for more input.
    Read,
    /// Close once the answers are written.
    Close,
    /// It asked for the event stream of this topic.
    Subscribe(Vec<u8>),
}

impl Floor {
    fn new(listener: TcpListener) -> std::io::Result<Floor> {
        listener.set_nonblocking(true)?;
        // std listens with a backlog of its own choice; `listen` on a listening socket only
        // sets its backlog (Linux).
        // SAFETY: no pointers; the listener's fd is open.
        cvt(unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) })?;
        let epoll = Epoll::new()?;
        // Level-triggered: it is accepted from until it would block anyway.
        epoll.add(listener.as_raw_fd(), libc::EPOLLIN, LISTENER)?;
        Ok(Floor {
            listener,
            epoll,
            conns: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            topics: HashMap::new(),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            accept_errors: 0,
        })
    }

    /// Serves until the process is ended (SIGTERM's default action).
    fn run(&mut self) -> std::io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let n = match self.epoll.wait(&mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for event in &events[..n] {
                let (token, flags) = (event.u64, event.events);
                if token == LISTENER {
                    self.accept();
                } else {
                    self.ready(token as usize, flags);
                }
            }
            self.free.append(&mut self.freed);
        }
    }

    /// Accepts every pending connection, each watched edge-triggered for input, room to write
    /// and hang-ups.
    fn accept(&mut self) {
        loop {
            // SAFETY: null address pointers are allowed (the peer's address is not asked for).
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR | libc::ECONNABORTED) => continue,
                    Some(libc::EAGAIN) => return,
                    _ => {
                        self.accept_errors += 1;
                        if self.accept_errors <= 3 {
                            eprintln!("floor: accept: {err}");
                        }
                        return;
                    }
                }
            }
            // SAFETY: `fd` is a connected socket just accepted, owned by nothing else.
            let stream = unsafe { TcpStream::from_raw_fd(fd) };
            // Answers are written whole, each in one write: none waits for an ACK.
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
            if let Err(err) = self.epoll.add(fd, events, slot as u64) {
                eprintln!("floor: epoll_ctl: {err}");
                self.free.push(slot);
                continue; // `stream` is dropped: closed.
            }
            self.conns[slot] = Some(Conn {
                stream,
                input: Vec::new(),
                out: Vec::new(),
                sent: 0,
                role: Role::Http,
                close_when_written: false,
            });
        }
    }

    /// Handles `flags` reported for the connection in `slot`.
    fn ready(&mut self, slot: usize, flags: u32) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            self.close(slot);
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            if !conn.flush() {
                self.close(slot);
                return;
            }
            if conn.close_when_written && conn.queued() == 0 {
                self.close_gracefully(slot);
                return;
            }
        }
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 {
            self.read(slot);
        }
    }

    /// Reads until the socket would block, answering each whole request as it comes; a
    /// subscriber's input, and any after a request that closes, is read and dropped.
    fn read(&mut self, slot: usize) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(slot) else {
                return;
            };
            let n = match (&conn.stream).read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close(slot);
                    return;
                }
            };
            if matches!(conn.role, Role::Http) && !conn.close_when_written {
                conn.input.extend_from_slice(&self.buf[..n]);
                self.serve(slot);
            }
        }
        // The end of its input: what it asked for before is answered, then it is closed.
        match self.conns.get_mut(slot) {
            Some(Some(conn)) if matches!(conn.role, Role::Http) && conn.queued() > 0 => {
                conn.close_when_written = true;
                conn.input = Vec::new();
            }
            _ => self.close(slot),
        }
    }

    /// Answers every whole request in the input of the connection in `slot`.
    fn serve(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let input = std::mem::take(&mut conn.input);
        let mut answers = Vec::new();
        let mut used = 0;
        let next = loop {
            let request = match parse(&input[used..]) {
                Parsed::Partial => break Next::Read,
                Parsed::Bad(answer) => {
                    answers.extend_from_slice(answer);
                    break Next::Close;
                }
                Parsed::Whole(request) => request,
            };
            used += request.len;
            match route(&request) {
                Route::Answer(answer) => answers.extend_from_slice(answer),
                Route::Publish(topic) => {
                    self.publish(topic, request.body);
                    answers.extend_from_slice(PUBLISHED);
                }
                Route::Subscribe(_) if request.http_1_0 => {
                    answers.extend_from_slice(NOT_HTTP_1_1);
                    break Next::Close;
                }
                Route::Subscribe(topic) => break Next::Subscribe(topic.to_vec()),
            }
            if request.close {
                break Next::Close;
            }
        };
        // The publishes above may have dropped subscribers, never this connection.
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        match next {
            Next::Read => {
                let mut input = input;
                input.drain(..used);
                conn.input = input;
                if !conn.send(&answers) {
                    self.close(slot);
                }
            }
            Next::Close => {
                conn.close_when_written = true;
                if !conn.send(&answers) {
                    self.close(slot);
                } else if conn.queued() == 0 {
                    self.close_gracefully(slot);
                }
            }
            Next::Subscribe(topic) => {
                answers.extend_from_slice(STREAM);
                if conn.send(&answers) {
                    self.subscribe(slot, &topic);
                } else {
                    self.close(slot);
                }
            }
        }
    }

    /// Makes the connection in `slot` a subscriber of `topic`.
    fn subscribe(&mut self, slot: usize, topic: &[u8]) {
        let key: Rc<[u8]> = match self.topics.get_key_value(topic) {
            Some((key, _)) => key.clone(),
            None => Rc::from(topic),
        };
        let subscribers = self.topics.entry(key.clone()).or_default();
        let at = subscribers.len();
        subscribers.push(slot);
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            // Whatever it sent after its request is dropped, and so is its buffer.
            conn.input = Vec::new();
            conn.role = Role::Subscriber { topic: key, at };
        }
    }

    /// Encodes `body` as one event in one chunk, once, and writes it to every subscriber of
    /// `topic`; drops those whose socket failed or whose queue is full.
    fn publish(&mut self, topic: &[u8], body: &[u8]) {
        let Some(subscribers) = self.topics.get(topic) else {
            return;
        };
        let chunk = chunk(body);
        let mut dropped = Vec::new();
        for &slot in subscribers {
            if let Some(Some(conn)) = self.conns.get_mut(slot)
                && !conn.send(&chunk)
            {
                dropped.push(slot);
            }
        }
        for slot in dropped {
            self.close(slot);
        }
    }

    /// Closes the connection in `slot` once the client has had its last answer: shuts down the
    /// writing side and drops the input already there (closing with unread input would reset
    /// the connection, and the client could lose the answer).
    fn close_gracefully(&mut self, slot: usize) {
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            let _ = conn.stream.shutdown(Shutdown::Write);
            while matches!((&conn.stream).read(&mut self.buf), Ok(n) if n > 0) {}
        }
        self.close(slot);
    }

    /// Closes the connection in `slot` (closing the socket takes it out of the epoll set) and
    /// takes it off its topic, which goes with its last subscriber.
    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.freed.push(slot);
        let Role::Subscriber { topic, at } = conn.role else {
            return;
        };
        let Some(subscribers) = self.topics.get_mut(&topic) else {
            return;
        };
        if at < subscribers.len() {
            subscribers.swap_remove(at);
            // The last one took its place.
            if let Some(&moved) = subscribers.get(at)
                && let Some(Some(Conn {
                    role: Role::Subscriber { at: moved_at, .. },
                    ..
                })) = self.conns.get_mut(moved)
            {
                *moved_at = at;
            }
        }
        if subscribers.is_empty() {
            self.topics.remove(&topic);
        }
    }
}

/// `body` as one SSE event (a `data: ` line for each of its lines, then a blank line), framed
/// as one HTTP/1.1 chunk: `{len:x}\r\n`, the event, `\r\n`. A line ends at CRLF, LF or CR, as
/// SSE reads them.
fn chunk(body: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(body.len() + 16);
    let line = |event: &mut Vec<u8>, text: &[u8]| {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(text);
        event.push(b'\n');
    };
    let (mut start, mut i) = (0, 0);
    while i < body.len() {
        match body[i] {
            b'\r' => {
                line(&mut event, &body[start..i]);
                i += if body.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            b'\n' => {
                line(&mut event, &body[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    line(&mut event, &body[start..]);
    event.push(b'\n');
    let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
    chunk.extend_from_slice(&event);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// A whole request, borrowed from the input.
struct Request<'a> {
    method: &'a [u8],
    /// The path, without its query.
    path: &'a [u8],
    body: &'a [u8],
    /// Its length in the input, head and body.
    len: usize,
    /// Whether the connection ends after its answer (`Connection: close`, or HTTP/1.0 without
    /// `keep-alive`).
    close: bool,
    http_1_0: bool,
}

/// What the start of a connection's input holds.
enum Parsed<'a> {
    /// Not a whole request yet.
    Partial,
    /// A request it does not read: the answer, after which the connection is closed.
    Bad(&'static [u8]),
    Whole(Request<'a>),
}

/// Reads the request at the start of `input`.
fn parse(input: &[u8]) -> Parsed<'_> {
    let Some(end) = find(input, b"\r\n\r\n") else {
        return if input.len() > HEAD_LIMIT {
            Parsed::Bad(BAD_REQUEST)
        } else {
            Parsed::Partial
        };
    };
    if end > HEAD_LIMIT {
        return Parsed::Bad(BAD_REQUEST);
    }
    let mut lines = input[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut parts = lines.next().unwrap_or_default().split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad(BAD_REQUEST);
    };
    let http_1_0 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Parsed::Bad(BAD_REQUEST),
    };
    if method.is_empty() || target.first() != Some(&b'/') {
        return Parsed::Bad(BAD_REQUEST);
    }
    let (mut length, mut close) = (None, http_1_0);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Bad(BAD_REQUEST);
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        // No whitespace in a name, nor before its colon (nor a folded line).
        if name.is_empty() || name.iter().any(u8::is_ascii_whitespace) {
            return Parsed::Bad(BAD_REQUEST);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Parsed::Bad(BAD_REQUEST),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // It reads no chunked request bodies, so it cannot tell where this one ends.
            return Parsed::Bad(BAD_REQUEST);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && http_1_0 {
                    close = false;
                }
            }
        }
    }
    let length = length.unwrap_or(0);
    if length > BODY_LIMIT {
        return Parsed::Bad(TOO_LARGE);
    }
    let start = end + 4;
    if input.len() - start < length {
        return Parsed::Partial;
    }
    let path = match target.iter().position(|&b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    Parsed::Whole(Request {
        method,
        path,
        body: &input[start..start + length],
        len: start + length,
        close,
        http_1_0,
    })
}

/// What a request asks for.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    /// An answer written as it is.
    Answer(&'static [u8]),
    Publish(&'a [u8]),
    Subscribe(&'a [u8]),
}

/// Routes `request`: `GET /plain`, `GET /events/{topic}`, `POST /publish/{topic}`.
fn route<'a>(request: &Request<'a>) -> Route<'a> {
    // A topic is one path segment, not empty.
    let topic = |prefix: &[u8]| {
        request
            .path
            .strip_prefix(prefix)
            .filter(|t| !t.is_empty() && !t.contains(&b'/'))
    };
    let method = request.method;
    if request.path == b"/plain" {
        return match method {
            b"GET" => Route::Answer(PLAIN),
            _ => Route::Answer(ONLY_GET),
        };
    }
    if let Some(topic) = topic(b"/events/") {
        return match method {
            b"GET" => Route::Subscribe(topic),
            _ => Route::Answer(ONLY_GET),
        };
    }
    if let Some(topic) = topic(b"/publish/") {
        return match method {
            b"POST" => Route::Publish(topic),
            _ => Route::Answer(ONLY_POST),
        };
    }
    Route::Answer(NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    use super::*;

    fn whole(input: &[u8]) -> Request<'_> {
        match parse(input) {
            Parsed::Whole(request) => request,
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(input)),
            Parsed::Bad(answer) => panic!("bad: {:?}", String::from_utf8_lossy(answer)),
        }
    }

    fn bad(input: &[u8]) -> &'static [u8] {
        match parse(input) {
            Parsed::Bad(answer) => answer,
            _ => panic!("read: {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn an_event_is_one_chunk_with_a_data_line_per_line() {
        assert_eq!(chunk(b"t=1;xx"), b"e\r\ndata: t=1;xx\n\n\r\n");
        assert_eq!(
            chunk(b"a\r\nb\nc\rd"),
            b"21\r\ndata: a\ndata: b\ndata: c\ndata: d\n\n\r\n"
        );
        assert_eq!(chunk(b""), b"8\r\ndata: \n\n\r\n");
        assert_eq!(chunk(b"a\n"), b"10\r\ndata: a\ndata: \n\n\r\n");
    }

    #[test]
    fn a_publish_is_read_with_its_body_and_pipelined_requests_one_by_one() {
        let two = b"POST /publish/fan HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /plain HTTP/1.1\r\n\r\n";
        let first = whole(two);
        assert_eq!(first.method, b"POST");
        assert_eq!(first.body, b"hello");
        assert!(!first.close);
        assert_eq!(route(&first), Route::Publish(b"fan"));
        let second = whole(&two[first.len..]);
        assert_eq!(second.len, two.len() - first.len);
        assert_eq!(route(&second), Route::Answer(PLAIN));
        // Not all of the body yet, nor all of the head.
        assert!(matches!(parse(&two[..first.len - 1]), Parsed::Partial));
        assert!(matches!(parse(b"GET /plain HTTP/1.1\r\n"), Parsed::Partial));
    }

    #[test]
    fn routes_are_those_of_the_other_servers() {
        fn route_of(head: &[u8]) -> Route<'_> {
            route(&whole(head))
        }
        assert_eq!(
            route_of(b"GET /events/u7?x=1 HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n"),
            Route::Subscribe(b"u7")
        );
        assert_eq!(
            route_of(b"POST /events/u7 HTTP/1.1\r\n\r\n"),
            Route::Answer(ONLY_GET)
        );
        assert_eq!(
            route_of(b"GET /publish/a HTTP/1.1\r\n\r\n"),
            Route::Answer(ONLY_POST)
        );
        for path in ["/events/", "/events/a/b", "/", "/plain/x"] {
            let head = format!("GET {path} HTTP/1.1\r\n\r\n");
            assert_eq!(
                route_of(head.as_bytes()),
                Route::Answer(NOT_FOUND),
                "{path}"
            );
        }
    }

    #[test]
    fn keep_alive_is_http_1_1_s_default_and_1_0_s_option() {
        assert!(!whole(b"GET /plain HTTP/1.1\r\n\r\n").close);
        assert!(whole(b"GET /plain HTTP/1.1\r\nConnection: Close\r\n\r\n").close);
        assert!(whole(b"GET /plain HTTP/1.0\r\n\r\n").close);
        assert!(!whole(b"GET /plain HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").close);
    }

    #[test]
    fn what_it_cannot_read_is_a_bad_request() {
        for input in [
            &b"GET /plain\r\n\r\n"[..],
            b"GET /plain HTTP/2.0\r\n\r\n",
            b"GET plain HTTP/1.1\r\n\r\n",
            b"GET  /plain HTTP/1.1\r\n\r\n",
            b"GET /plain HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /plain HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET /plain HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"POST /publish/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /publish/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST /publish/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(
                bad(input),
                BAD_REQUEST,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let huge = format!(
            "POST /publish/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            BODY_LIMIT + 1
        );
        assert_eq!(bad(huge.as_bytes()), TOO_LARGE);
        // A head that never ends.
        assert_eq!(bad(&vec![b'a'; HEAD_LIMIT + 1]), BAD_REQUEST);
    }

    /// A floor on a port of its own, in a thread of its own (it runs until the test process
    /// ends): its address.
    fn serve() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || Floor::new(listener).unwrap().run());
        addr
    }

    fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    /// Reads until `stream` has sent `want` bytes.
    fn read_exactly(stream: &mut TcpStream, want: usize) -> Vec<u8> {
        let mut got = vec![0; want];
        stream.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn subscribers_get_each_event_as_one_chunk_and_publishers_keep_their_connection() {
        let addr = serve();
        let mut subscribers: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut s = connect(addr);
                s.write_all(
                    b"GET /events/t HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
                )
                .unwrap();
                assert_eq!(read_exactly(&mut s, STREAM.len()), STREAM);
                s
            })
            .collect();
        let mut other = connect(addr);
        other.write_all(b"GET /events/u HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_exactly(&mut other, STREAM.len()), STREAM);
        // One subscriber leaves: the others keep theirs.
        drop(subscribers.remove(0));
        let mut publisher = connect(addr);
        let publish = |body: &str| {
            format!(
                "POST /publish/t HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        // Two publishes and a `/plain`, pipelined, on one connection: three answers in order.
        let requests = format!(
            "{}{}GET /plain HTTP/1.1\r\n\r\n",
            publish("one"),
            publish("two")
        );
        publisher.write_all(requests.as_bytes()).unwrap();
        let answers = [PUBLISHED, PUBLISHED, PLAIN].concat();
        assert_eq!(read_exactly(&mut publisher, answers.len()), answers);
        let events = [chunk(b"one"), chunk(b"two")].concat();
        for s in &mut subscribers {
            assert_eq!(read_exactly(s, events.len()), events);
        }
        // The other topic's subscriber got none of them: its next bytes are its own event.
        let mut alone = connect(addr);
        alone
            .write_all(b"POST /publish/u HTTP/1.1\r\nContent-Length: 4\r\n\r\nmine")
            .unwrap();
        assert_eq!(read_exactly(&mut alone, PUBLISHED.len()), PUBLISHED);
        assert_eq!(
            read_exactly(&mut other, chunk(b"mine").len()),
            chunk(b"mine")
        );
    }

    #[test]
    fn a_bad_request_is_answered_400_and_closed() {
        let addr = serve();
        let mut s = connect(addr);
        s.write_all(b"GET /plain HTTP/1.1\r\n\r\nBAD REQUEST LINE HERE\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert_eq!(all, [PLAIN, BAD_REQUEST].concat());
        // The server goes on.
        let mut s = connect(addr);
        s.write_all(b"GET /plain HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert_eq!(all, PLAIN);
    }
}
