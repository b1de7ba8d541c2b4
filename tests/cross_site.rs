//! Cross-site requests and DNS rebinding, over real sockets and raw HTTP/1.1: what a browser
//! sends for a page on another site, for a page on a name rebound to the server's address, and
//! for the server's own page, and what `curl` sends.
//!
//! The app has `POST /publish`, whose handler counts its runs (the assertion that a refused
//! request never reached it), and `GET /events`, an event stream. Clients bound to
//! 127.0.0.2 are a trusted proxy's connections (Linux routes all of 127.0.0.0/8 to the
//! loopback interface); those from 127.0.0.1 are anyone else's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use futures_util::stream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::timeout;
use tower_sse::{Event, EventStream, SseLayer};

/// A failure guard for each exchange, never a way to wait for something.
const GUARD: Duration = Duration::from_secs(20);
const PROXY: &str = "127.0.0.2";
const APP: &str = "https://app.example.com";

/// A server of the test app on 127.0.0.1, its layer made by `layer` from its own address.
struct Server {
    addr: SocketAddr,
    published: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(layer: impl FnOnce(SocketAddr) -> SseLayer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let published = Arc::new(AtomicUsize::new(0));
        let count = published.clone();
        let app = Router::new()
            .route(
                "/publish",
                post(move |body: String| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async move { format!("published {body}") }
                }),
            )
            .route(
                "/events",
                get(|| async { EventStream::new(stream::iter([Event::data("hello")])) }),
            )
            .layer(layer(addr));
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Server {
            addr,
            published,
            task,
        }
    }

    fn published(&self) -> usize {
        self.published.load(Ordering::SeqCst)
    }

    /// `Host` for this server: `127.0.0.1:port`.
    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Sends `head` (the request line and headers, without the blank line) and `body` from
    /// 127.0.0.1, and reads the whole answer.
    async fn send(&self, head: &str, body: &str) -> Answer {
        self.send_from("127.0.0.1", head, body).await
    }

    /// The same from `source`.
    async fn send_from(&self, source: &str, head: &str, body: &str) -> Answer {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        let mut stream = timeout(GUARD, socket.connect(self.addr))
            .await
            .unwrap()
            .unwrap();
        let request = format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        timeout(GUARD, stream.read_to_end(&mut raw))
            .await
            .expect("the server answers and closes")
            .unwrap();
        Answer::parse(&raw)
    }

    /// A simple `POST /publish` with a `text/plain` body, as a form or a `fetch` without a
    /// preflight sends it, with `Host: host` and these headers.
    async fn publish(&self, host: &str, headers: &[&str]) -> Answer {
        self.publish_from("127.0.0.1", host, headers).await
    }

    async fn publish_from(&self, source: &str, host: &str, headers: &[&str]) -> Answer {
        let mut head = format!(
            "POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain;charset=UTF-8"
        );
        for header in headers {
            head.push_str("\r\n");
            head.push_str(header);
        }
        self.send_from(source, &head, "hello").await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response: its status and its body (de-chunked).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .expect("a status line");
        let headers = head.to_ascii_lowercase();
        let body = if headers.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Answer {
            status,
            headers,
            body,
        }
    }
}

fn dechunk(mut chunked: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = chunked.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
    body
}

/// Asserts that `answer` is the cross-origin refusal, and that nothing was published.
fn assert_refused_cross_origin(server: &Server, answer: &Answer) {
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.body, "cross-origin request refused\n");
    assert_eq!(server.published(), 0, "the handler ran");
}

fn assert_published(answer: &Answer) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "published hello");
}

// ---------------------------------------------------------------------------------------------
// Hosts and DNS rebinding
// ---------------------------------------------------------------------------------------------

/// A server that serves its own address and `localhost` on its port, as the hub server does.
async fn with_hosts() -> Server {
    Server::start(|addr| {
        SseLayer::new().allow_hosts([addr.to_string(), format!("localhost:{}", addr.port())])
    })
    .await
}

#[tokio::test]
async fn an_unknown_host_is_refused_with_421() {
    let server = with_hosts().await;
    let answer = server.publish("evil.example", &[]).await;
    assert_eq!(answer.status, 421, "{answer:?}");
    assert_eq!(
        answer.body,
        "this server does not serve the requested host\n"
    );
    assert!(answer.headers.contains("content-type: text/plain"));
    assert_eq!(server.published(), 0, "the handler ran");
    let answer = server
        .send("GET /events HTTP/1.1\r\nHost: evil.example", "")
        .await;
    assert_eq!(answer.status, 421, "{answer:?}");
    // The server's address on another port is another host too.
    let answer = server.publish("127.0.0.1:1", &[]).await;
    assert_eq!(answer.status, 421, "{answer:?}");
}

#[tokio::test]
async fn an_allowed_host_is_served() {
    let server = with_hosts().await;
    assert_published(&server.publish(&server.host(), &[]).await);
    let localhost = format!("LocalHost:{}", server.addr.port());
    assert_published(&server.publish(&localhost, &[]).await);
    let answer = server
        .send(&format!("GET /events HTTP/1.1\r\nHost: {localhost}"), "")
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("data: hello\n\n"), "{answer:?}");
}

#[tokio::test]
async fn a_missing_host_is_refused_with_400() {
    let server = with_hosts().await;
    let answer = server.send("POST /publish HTTP/1.1", "hello").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.body, "the request names no host\n");
    assert_eq!(server.published(), 0, "the handler ran");
}

#[tokio::test]
async fn a_rebound_page_is_refused_though_host_and_origin_agree() {
    // evil.example now resolves to 127.0.0.1: the victim's browser sends the page's requests
    // there with `Host` and `Origin` naming evil.example, and calls them same-origin.
    let server = with_hosts().await;
    let port = server.addr.port();
    let host = format!("evil.example:{port}");
    let origin = format!("Origin: http://evil.example:{port}");
    let answer = server
        .publish(&host, &[&origin, "Sec-Fetch-Site: same-origin"])
        .await;
    assert_eq!(answer.status, 421, "{answer:?}");
    assert_eq!(server.published(), 0, "the handler ran");
    let answer = server
        .send(
            &format!(
                "GET /events HTTP/1.1\r\nHost: {host}\r\n{origin}\r\nAccept: text/event-stream"
            ),
            "",
        )
        .await;
    assert_eq!(answer.status, 421, "{answer:?}");
    assert!(!answer.body.contains("hello"), "{answer:?}");
}

// ---------------------------------------------------------------------------------------------
// Cross-site writes
// ---------------------------------------------------------------------------------------------

async fn default_server() -> Server {
    Server::start(|_| SseLayer::new()).await
}

#[tokio::test]
async fn a_cross_site_simple_post_is_refused_without_running_the_handler() {
    let server = default_server().await;
    let answer = server
        .publish(&server.host(), &["Origin: https://evil.example"])
        .await;
    assert_refused_cross_origin(&server, &answer);
    // A browser since 2023 says so itself.
    let answer = server
        .publish(
            &server.host(),
            &["Origin: https://evil.example", "Sec-Fetch-Site: cross-site"],
        )
        .await;
    assert_refused_cross_origin(&server, &answer);
}

#[tokio::test]
async fn a_null_origin_post_is_refused() {
    let server = default_server().await;
    let answer = server.publish(&server.host(), &["Origin: null"]).await;
    assert_refused_cross_origin(&server, &answer);
}

#[tokio::test]
async fn sec_fetch_site_cross_site_without_origin_is_refused() {
    let server = default_server().await;
    let answer = server
        .publish(&server.host(), &["Sec-Fetch-Site: cross-site"])
        .await;
    assert_refused_cross_origin(&server, &answer);
}

#[tokio::test]
async fn a_same_origin_post_is_published() {
    let server = default_server().await;
    let origin = format!("Origin: http://{}", server.addr);
    assert_published(&server.publish(&server.host(), &[&origin]).await);
    assert_published(
        &server
            .publish(&server.host(), &[&origin, "Sec-Fetch-Site: same-origin"])
            .await,
    );
    assert_eq!(server.published(), 2);
}

#[tokio::test]
async fn a_scheme_mismatch_is_refused() {
    // `https://` and the server's host and port, to a server the client reached over plain
    // HTTP from an untrusted peer: another origin.
    let server = default_server().await;
    let origin = format!("Origin: https://{}", server.addr);
    let answer = server.publish(&server.host(), &[&origin]).await;
    assert_refused_cross_origin(&server, &answer);
}

async fn behind_a_trusted_proxy() -> Server {
    Server::start(|_| SseLayer::new().trusted_proxies([PROXY])).await
}

#[tokio::test]
async fn x_forwarded_proto_from_a_trusted_proxy_makes_it_same_origin() {
    let server = behind_a_trusted_proxy().await;
    let origin = format!("Origin: https://{}", server.addr);
    let answer = server
        .publish_from(
            PROXY,
            &server.host(),
            &[&origin, "X-Forwarded-Proto: https"],
        )
        .await;
    assert_published(&answer);
    let answer = server
        .publish_from(
            PROXY,
            &server.host(),
            &[&origin, "Forwarded: for=203.0.113.7;proto=https"],
        )
        .await;
    assert_published(&answer);
}

#[tokio::test]
async fn x_forwarded_proto_from_an_untrusted_peer_is_ignored() {
    let server = behind_a_trusted_proxy().await;
    let origin = format!("Origin: https://{}", server.addr);
    let answer = server
        .publish_from(
            "127.0.0.1",
            &server.host(),
            &[&origin, "X-Forwarded-Proto: https"],
        )
        .await;
    assert_refused_cross_origin(&server, &answer);
}

#[tokio::test]
async fn an_allowed_origins_post_is_published() {
    let server = Server::start(|_| SseLayer::new().allow_origins([APP])).await;
    let answer = server
        .publish(
            &server.host(),
            &[&format!("Origin: {APP}"), "Sec-Fetch-Site: cross-site"],
        )
        .await;
    assert_published(&answer);
    assert!(
        answer
            .headers
            .contains(&format!("access-control-allow-origin: {APP}")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_post_without_origin_is_published() {
    // What `curl -d hello` sends.
    let server = default_server().await;
    assert_published(
        &server
            .publish(&server.host(), &["User-Agent: curl/8.5.0"])
            .await,
    );
}

#[tokio::test]
async fn no_cross_origin_protection_publishes_from_anywhere() {
    let server = Server::start(|_| SseLayer::new().no_cross_origin_protection()).await;
    let answer = server
        .publish(&server.host(), &["Origin: https://evil.example"])
        .await;
    assert_published(&answer);
}
