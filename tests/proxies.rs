//! Peers behind proxies, over real sockets: clients bound to different loopback addresses
//! (127.0.0.2, 127.0.0.3, …: Linux routes all of 127.0.0.0/8 to the loopback interface) are
//! different peers. The server is the hub server of `examples/hub.rs` with `TRUSTED_PROXIES`:
//! from the trusted proxy, the client is read from `Forwarded` or `X-Forwarded-For`, and the
//! registry and the per-peer limits use it; from anyone else those headers are ignored; headers
//! the layer cannot read never break anything. Then its default per-peer cap of 50.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::timeout;
use tower_sse::registry::Registry;

mod support;
use support::hub::{Config, Server, config};

const PROXY: &str = "127.0.0.2";
const GUARD: Duration = Duration::from_secs(30);

/// The hub server of `examples/hub.rs`, trusting [`PROXY`] and allowing one stream per client.
async fn start() -> Server {
    Server::start(Config {
        trusted_proxies: vec![PROXY.to_owned()],
        max_connections_per_peer: Some(1),
        ..config()
    })
    .await
}

/// A client whose connections come from `source`.
fn from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// An open stream: the response body, read up to its first frame.
type Stream = futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>;

/// Opens a stream from `client` with `headers`; returns its first frame and the body.
async fn open(
    client: &reqwest::Client,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> (String, Stream) {
    let mut request = client.get(format!("http://{addr}/events/news"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = timeout(GUARD, request.send()).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream().boxed();
    let first = timeout(GUARD, body.next())
        .await
        .expect("a first frame")
        .expect("a frame")
        .unwrap();
    (String::from_utf8_lossy(&first).into_owned(), body)
}

/// The client addresses the registry shows, sorted.
fn peers(registry: &Registry) -> Vec<String> {
    let mut peers: Vec<String> = registry
        .snapshot()
        .iter()
        .map(|c| c.peer().map(|p| p.to_string()).unwrap_or_default())
        .collect();
    peers.sort();
    peers
}

/// The client addresses the registry shows, without ports (the server's own peers have
/// ephemeral ones).
fn ips(registry: &Registry) -> Vec<String> {
    let mut ips: Vec<String> = registry
        .snapshot()
        .iter()
        .map(|c| c.peer().map(|p| p.ip().to_string()).unwrap_or_default())
        .collect();
    ips.sort();
    ips
}

const OPENED: &str = ":\n\n";
const REFUSED: &str = ": too many connections from this address\n";

#[tokio::test]
async fn forwarded_headers_from_the_trusted_proxy_name_the_client() {
    let server = start().await;
    let (addr, registry) = (server.addr, server.hub.registry());
    let proxy = from(PROXY);

    // Clients behind the proxy: a slot each, known by their own addresses. The client wrote
    // the left entry of the first header itself; the proxy appended the one it saw.
    let (first, _a) = open(
        &proxy,
        addr,
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.7")],
    )
    .await;
    assert_eq!(first, OPENED);
    let (first, _b) = open(&proxy, addr, &[("forwarded", "for=203.0.113.8;proto=http")]).await;
    assert_eq!(first, OPENED);
    let (first, _c) = open(
        &proxy,
        addr,
        &[("forwarded", r#"for="[2001:db8::7]:4711""#)],
    )
    .await;
    assert_eq!(first, OPENED);
    assert_eq!(
        peers(&registry),
        ["203.0.113.7:0", "203.0.113.8:0", "[2001:db8::7]:4711"]
    );
    assert_eq!(registry.count_for(PROXY.parse().unwrap()), 0);
    // `/connections` shows them too.
    let shown: Vec<String> = server
        .connections()
        .await
        .iter()
        .map(|c| c["peer"].as_str().unwrap().to_owned())
        .collect();
    assert!(shown.contains(&"203.0.113.7:0".to_owned()), "{shown:?}");

    // The same client again, through the same proxy: over its own cap, whichever header.
    let (first, _) = open(&proxy, addr, &[("x-forwarded-for", "203.0.113.7")]).await;
    assert!(first.starts_with(REFUSED), "{first:?}");
    let (first, _) = open(&proxy, addr, &[("forwarded", "for=203.0.113.7")]).await;
    assert!(first.starts_with(REFUSED), "{first:?}");
    // A client that names someone else on the left still counts as itself.
    let (first, _) = open(
        &proxy,
        addr,
        &[("x-forwarded-for", "203.0.113.99, 203.0.113.8")],
    )
    .await;
    assert!(first.starts_with(REFUSED), "{first:?}");
    assert_eq!(registry.len(), 3);
}

#[tokio::test]
async fn forwarded_headers_from_anyone_else_are_ignored() {
    let server = start().await;
    let (addr, registry) = (server.addr, server.hub.registry());
    let stranger = from("127.0.0.3");

    let (first, _a) = open(&stranger, addr, &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(first, OPENED);
    assert_eq!(ips(&registry), ["127.0.0.3"]);
    // Spoofing another client does not buy another slot.
    for headers in [
        [("x-forwarded-for", "203.0.113.8")],
        [("forwarded", "for=203.0.113.9")],
    ] {
        let (first, _) = open(&stranger, addr, &headers).await;
        assert!(first.starts_with(REFUSED), "{first:?}");
    }
    // Another peer has a slot of its own.
    let (first, _b) = open(
        &from("127.0.0.4"),
        addr,
        &[("forwarded", "for=203.0.113.7")],
    )
    .await;
    assert_eq!(first, OPENED);
    assert_eq!(ips(&registry), ["127.0.0.3", "127.0.0.4"]);
}

#[tokio::test]
async fn headers_the_layer_cannot_read_leave_the_proxy_as_the_peer() {
    let server = start().await;
    let (addr, registry) = (server.addr, server.hub.registry());
    let proxy = from(PROXY);
    let unreadable: [&[(&str, &str)]; 6] = [
        &[("x-forwarded-for", "203.0.113.7, garbage")],
        &[("x-forwarded-for", "999.0.0.1")],
        &[("forwarded", "for=unknown")],
        &[("forwarded", r#"for="203.0.113.7"#)],
        &[("forwarded", "for=_hidden;by=10.0.0.1")],
        // The proxy set one header, the client wrote the other: neither is believed.
        &[
            ("forwarded", "for=203.0.113.7"),
            ("x-forwarded-for", "203.0.113.8"),
        ],
    ];
    // The first takes the proxy's own slot; the others find it taken, as the proxy.
    let mut kept = Vec::new();
    for (n, headers) in unreadable.iter().enumerate() {
        let (first, body) = open(&proxy, addr, headers).await;
        if n == 0 {
            assert_eq!(first, OPENED);
            kept.push(body);
        } else {
            assert!(first.starts_with(REFUSED), "{headers:?}: {first:?}");
        }
        assert_eq!(ips(&registry), [PROXY], "{headers:?}");
    }
    // The server is as it was.
    let (first, _b) = open(&proxy, addr, &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(first, OPENED);
}

#[tokio::test]
async fn the_hub_server_caps_each_peer_at_50_streams_by_default() {
    let defaults = Config::default();
    assert_eq!(defaults.max_connections_per_peer, Some(50));
    assert!(defaults.trusted_proxies.is_empty());
    let server = Server::start(Config {
        addr: "127.0.0.1:0".to_owned(),
        ..defaults
    })
    .await;
    let (addr, registry) = (server.addr, server.hub.registry());

    let busy = from("127.0.0.5");
    let mut open_streams = Vec::new();
    for _ in 0..50 {
        let (first, body) = open(&busy, addr, &[]).await;
        assert_eq!(first, OPENED);
        open_streams.push(body);
    }
    let (first, _) = open(&busy, addr, &[]).await;
    assert!(first.starts_with(REFUSED), "{first:?}");
    // Without trusted proxies, a forwarded header changes nothing.
    let (first, _) = open(&busy, addr, &[("x-forwarded-for", "203.0.113.7")]).await;
    assert!(first.starts_with(REFUSED), "{first:?}");
    // Everyone else still gets in.
    let (first, _other) = open(&from("127.0.0.6"), addr, &[]).await;
    assert_eq!(first, OPENED);
    assert_eq!(registry.len(), 51);
}

#[tokio::test]
async fn a_bad_trusted_proxy_is_refused_with_the_variable_named() {
    let bad = Config {
        trusted_proxies: vec!["10.0.0.0/99".to_owned()],
        ..config()
    };
    let err = support::hub::hub_server::app(&bad)
        .await
        .err()
        .expect("a bad proxy is refused");
    assert!(err.starts_with("TRUSTED_PROXIES: "), "{err}");
}
