//! A test client for event streams: a real HTTP response read through the WHATWG parser.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::whatwg::{ParsedEvent, Parser};

/// How long any single read may take before the test fails (a failure guard, never a way to
/// wait for something).
pub const GUARD: Duration = Duration::from_secs(20);

/// The pause between two looks at something another task or process changes (never a way to
/// wait for it: the look is what waits).
pub const POLL: Duration = Duration::from_millis(10);

/// `GET url`, its body as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.unwrap();
    response.json().await.unwrap()
}

/// Sends a request for `/events/{topic}` on a socket whose receive buffer is `recv_buffer`
/// bytes (the kernel may round it up), and never reads until the test says so: a client that
/// has stopped reading.
pub async fn silent_client(
    addr: std::net::SocketAddr,
    topic: &str,
    recv_buffer: u32,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /events/{topic} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads the events of one streaming response, in order.
pub struct EventReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: Parser,
    pending: VecDeque<ParsedEvent>,
    raw: Vec<u8>,
    ended: bool,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "an event stream answers 200");
        EventReader {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(),
            pending: VecDeque::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// The next event, or `None` once the server has ended the stream. Fails when neither
    /// comes within the guard time, keep-alive comments or not.
    pub async fn next(&mut self) -> Option<ParsedEvent> {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("the server sends an event, or ends the stream, within the guard time");
            match chunk {
                Some(Ok(chunk)) => {
                    self.raw.extend_from_slice(&chunk);
                    self.pending.extend(self.parser.feed(&chunk));
                }
                Some(Err(err)) => panic!("transport error: {err}"),
                None => self.ended = true,
            }
        }
    }

    /// The next `count` events; fails if the stream ends first.
    pub async fn take(&mut self, count: usize) -> Vec<ParsedEvent> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            match self.next().await {
                Some(event) => events.push(event),
                None => panic!("the stream ended after {} of {count} events", events.len()),
            }
        }
        events
    }

    /// Every event until the server ends the stream.
    pub async fn until_end(&mut self) -> Vec<ParsedEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    /// The last `retry:` value received.
    pub fn retry(&self) -> Option<u64> {
        self.parser.retry()
    }

    /// Every byte received so far.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}
