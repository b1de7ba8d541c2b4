//! Tests for [`SseLayer::trusted_proxies`]: which address the layer takes for the client, from
//! `Forwarded` and `X-Forwarded-For`, and what uses it (the extensions, the registry, the
//! per-peer limits). The real-socket tests are in `tests/proxies.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{ServiceExt as _, service_fn};
use tower_layer::Layer as _;

use super::proxy::TrustedProxies;
use super::tests::{KEEP_ALIVE, channel_body, event_stream_response, next, rest};
use super::{ClientAddr, SseLayer};
use crate::registry::Registry;

const PROXY: &str = "10.0.0.1:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn trusted() -> TrustedProxies {
    TrustedProxies::list(["10.0.0.0/8", "::1"]).unwrap()
}

/// The client the layer takes for a request from `peer` with these headers.
fn client_of(peer: &str, headers: &[(&str, &str)]) -> SocketAddr {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    trusted().client(addr(peer), &map)
}

fn xff(value: &str) -> SocketAddr {
    client_of(PROXY, &[("x-forwarded-for", value)])
}

fn forwarded(value: &str) -> SocketAddr {
    client_of(PROXY, &[("forwarded", value)])
}

// ---------------------------------------------------------------------------------------------
// Who the client is
// ---------------------------------------------------------------------------------------------

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_sends() {
    let peer = "198.51.100.9:4000";
    for header in ["x-forwarded-for", "forwarded"] {
        let value = if header == "forwarded" {
            "for=203.0.113.7"
        } else {
            "203.0.113.7"
        };
        assert_eq!(client_of(peer, &[(header, value)]), addr(peer));
    }
}

#[test]
fn a_trusted_peer_without_headers_is_the_client() {
    assert_eq!(client_of(PROXY, &[]), addr(PROXY));
    assert_eq!(xff(""), addr(PROXY));
    assert_eq!(xff(" , ,"), addr(PROXY));
}

#[test]
fn x_forwarded_for_gives_the_rightmost_untrusted_hop() {
    assert_eq!(xff("203.0.113.7"), addr("203.0.113.7:0"));
    // The client wrote the first entry itself; the proxy appended the address it saw.
    assert_eq!(xff("198.51.100.1, 203.0.113.7"), addr("203.0.113.7:0"));
    // A chain of trusted proxies.
    assert_eq!(xff("203.0.113.7, 10.0.0.2,10.1.2.3"), addr("203.0.113.7:0"));
    // Every hop trusted: the first is the client.
    assert_eq!(xff("10.0.0.3, 10.0.0.2"), addr("10.0.0.3:0"));
    // Ports and IPv6, bare or bracketed.
    assert_eq!(xff("203.0.113.7:4711"), addr("203.0.113.7:4711"));
    assert_eq!(xff("2001:db8::1"), addr("[2001:db8::1]:0"));
    assert_eq!(xff("[2001:db8::1]:4711"), addr("[2001:db8::1]:4711"));
    assert_eq!(xff("[2001:db8::1]"), addr("[2001:db8::1]:0"));
    // An IPv4 client written as IPv6 is the same client.
    assert_eq!(xff("::ffff:203.0.113.7"), addr("203.0.113.7:0"));
}

#[test]
fn headers_of_one_name_read_in_order_as_one_list() {
    for name in ["x-forwarded-for", "forwarded"] {
        let value = |v: &'static str| if name == "forwarded" { v } else { &v[4..] };
        let client = client_of(
            PROXY,
            &[
                (name, value("for=198.51.100.1")),
                (name, value("for=203.0.113.7")),
                (name, value("for=10.0.0.2")),
            ],
        );
        assert_eq!(client, addr("203.0.113.7:0"), "{name}");
    }
}

#[test]
fn an_unreadable_hop_stops_the_walk_at_the_peer() {
    // Where it matters (right of any untrusted hop): the peer is taken.
    assert_eq!(xff("203.0.113.7, garbage"), addr(PROXY));
    assert_eq!(xff("203.0.113.7, unknown"), addr(PROXY));
    assert_eq!(xff("203.0.113.7, 999.1.1.1"), addr(PROXY));
    assert_eq!(xff("203.0.113.7:99999"), addr(PROXY));
    // Left of the client, where only the client could have written it: ignored.
    assert_eq!(xff("garbage, 203.0.113.7"), addr("203.0.113.7:0"));
    assert_eq!(xff("garbage, 203.0.113.7, 10.0.0.2"), addr("203.0.113.7:0"));
}

#[test]
fn forwarded_gives_the_rightmost_untrusted_for() {
    assert_eq!(
        forwarded("for=192.0.2.60;proto=http;by=203.0.113.43"),
        addr("192.0.2.60:0")
    );
    assert_eq!(
        forwarded(r#"for="[2001:db8:cafe::17]:4711""#),
        addr("[2001:db8:cafe::17]:4711")
    );
    assert_eq!(
        forwarded("for=192.0.2.43, for=198.51.100.17"),
        addr("198.51.100.17:0")
    );
    assert_eq!(
        forwarded("for=198.51.100.17, for=10.0.0.2;proto=https"),
        addr("198.51.100.17:0")
    );
    // Case-insensitive names, spaces around separators, quoted values with separators inside.
    assert_eq!(
        forwarded(r#"proto=https ; FOR = "192.0.2.43:80" ; ext="a,b;c""#),
        addr("192.0.2.43:80")
    );
    assert_eq!(
        forwarded(r#"for=192.0.2.43;ext="a,b", for=198.51.100.17"#),
        addr("198.51.100.17:0")
    );
    // An obfuscated port counts as none.
    assert_eq!(forwarded(r#"for="192.0.2.43:_p1""#), addr("192.0.2.43:0"));
    // Empty elements are skipped.
    assert_eq!(forwarded("for=192.0.2.43,,"), addr("192.0.2.43:0"));
}

#[test]
fn an_unreadable_forwarded_element_stops_the_walk_at_the_peer() {
    for value in [
        "for=unknown",
        "for=_gazonk",
        r#"for="_gazonk""#,
        "proto=https",
        r#"for="192.0.2.43"#,
        r#"for="192.0.2.43"junk"#,
        r#"for="192.0.2\.43""#,
        "for",
        "=192.0.2.43",
        "for=192.0.2.43:port",
        "for=192.0.2.43, for=unknown",
    ] {
        assert_eq!(forwarded(value), addr(PROXY), "{value}");
    }
    // Left of the client: ignored.
    assert_eq!(
        forwarded("for=unknown, for=192.0.2.43"),
        addr("192.0.2.43:0")
    );
}

#[test]
fn both_headers_must_agree() {
    let both = |f: &str, x: &str| client_of(PROXY, &[("forwarded", f), ("x-forwarded-for", x)]);
    assert_eq!(both("for=192.0.2.43", "192.0.2.43"), addr("192.0.2.43:0"));
    assert_eq!(
        both(r#"for="192.0.2.43:4711""#, "192.0.2.43"),
        addr("192.0.2.43:4711")
    );
    // The proxy sets one; the client wrote the other. Neither can be believed.
    assert_eq!(both("for=1.1.1.1", "192.0.2.43"), addr(PROXY));
    assert_eq!(both("for=unknown", "192.0.2.43"), addr(PROXY));
}

#[test]
fn an_ipv4_proxy_on_a_dual_stack_socket_is_trusted() {
    assert_eq!(
        client_of(
            "[::ffff:10.0.0.1]:5000",
            &[("x-forwarded-for", "203.0.113.7")]
        ),
        addr("203.0.113.7:0")
    );
    assert_eq!(
        client_of("[::1]:5000", &[("x-forwarded-for", "203.0.113.7")]),
        addr("203.0.113.7:0")
    );
}

#[test]
fn proxies_are_addresses_or_networks() {
    let ok = TrustedProxies::list([
        "10.0.0.7",
        " 192.168.0.0/16 ",
        "::1",
        "fd00::/8",
        "10.1.2.3/8",
    ])
    .unwrap();
    assert!(ok.client(addr("10.9.9.9:1"), &HeaderMap::new()) == addr("10.9.9.9:1"));
    for bad in [
        "",
        "nope",
        "10.0.0.0/33",
        "10.0.0",
        "*",
        "10.0.0.0/8/8",
        "http://10.0.0.1",
    ] {
        let err = SseLayer::new().try_trusted_proxies([bad]).unwrap_err();
        assert!(err.to_string().contains("CIDR notation"), "{err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    // An empty list trusts nobody.
    let layer = SseLayer::new().trusted_proxies(Vec::<String>::new());
    assert!(layer.config.trusted_proxies.is_none());
}

#[test]
#[should_panic(expected = "tower_sse::SseLayer::trusted_proxies: trusted proxy \"10.0.0.0/40\"")]
fn trusted_proxies_panics_on_a_bad_constant() {
    let _ = SseLayer::new().trusted_proxies(["10.0.0.0/40"]);
}

proptest! {
    /// Whatever a trusted proxy passes on, the layer finds a client without panicking, and it
    /// is the peer or an address the headers name.
    #[test]
    fn headers_never_panic(
        forwarded in proptest::collection::vec("[ -~]{0,60}", 0..3),
        xff in proptest::collection::vec("[ -~]{0,60}", 0..3),
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut headers = HeaderMap::new();
        for value in &forwarded {
            headers.append("forwarded", HeaderValue::from_str(value).unwrap());
        }
        for value in &xff {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            headers.append("x-forwarded-for", value.clone());
            headers.append("forwarded", value);
        }
        let _ = trusted().client(addr(PROXY), &headers);
    }
}

// ---------------------------------------------------------------------------------------------
// What uses it
// ---------------------------------------------------------------------------------------------

/// A request from `peer` (as axum's connect info says) with an `X-Forwarded-For` header.
fn request(peer: &str, forwarded_for: Option<&str>) -> Request<Body> {
    let mut request = Request::get("http://api.example.com/events")
        .header("accept", "text/event-stream")
        .body(Body::empty())
        .unwrap();
    if let Some(value) = forwarded_for {
        request
            .headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
    }
    request.extensions_mut().insert(ConnectInfo(addr(peer)));
    request
}

/// Sends `request` through `layer` to a handler that answers with an event stream and reports
/// the `ClientAddr` it found; returns the response.
async fn through(
    layer: &SseLayer,
    request: Request<Body>,
) -> (Option<ClientAddr>, Response<super::SseBody<Body>>) {
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let service = layer.layer(service_fn(move |req: Request<Body>| {
        let _ = seen_tx.send(req.extensions().get::<ClientAddr>().copied());
        async move {
            let (tx, body) = channel_body();
            std::mem::forget(tx);
            Ok::<_, Infallible>(event_stream_response(body))
        }
    }));
    let response = service.oneshot(request).await.unwrap();
    (seen_rx.try_recv().ok().flatten(), response)
}

#[tokio::test]
async fn the_client_goes_to_the_extensions_and_the_registry() {
    let registry = Registry::new();
    let layer = SseLayer::new()
        .registry(registry.clone())
        .trusted_proxies(["10.0.0.0/8"]);

    let (seen, response) = through(&layer, request(PROXY, Some("203.0.113.7"))).await;
    assert_eq!(seen, Some(ClientAddr(addr("203.0.113.7:0"))));
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(registry.snapshot()[0].peer(), Some(addr("203.0.113.7:0")));
    assert_eq!(registry.count_for("203.0.113.7".parse().unwrap()), 1);
    assert_eq!(registry.count_for(addr(PROXY).ip()), 0);

    // Spoofed by a peer that is not a proxy: ignored.
    let (seen, response) = through(&layer, request("198.51.100.9:4000", Some("203.0.113.8"))).await;
    assert_eq!(seen, Some(ClientAddr(addr("198.51.100.9:4000"))));
    let mut spoofed = response.into_body();
    assert_eq!(next(&mut spoofed).await, KEEP_ALIVE);
    assert_eq!(registry.count_for("203.0.113.8".parse().unwrap()), 0);
    assert_eq!(registry.count_for("198.51.100.9".parse().unwrap()), 1);
}

#[tokio::test]
async fn without_trusted_proxies_the_headers_are_ignored_and_nothing_is_added() {
    let registry = Registry::new();
    let layer = SseLayer::new().registry(registry.clone());
    let (seen, response) = through(&layer, request(PROXY, Some("203.0.113.7"))).await;
    assert_eq!(seen, None);
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await, KEEP_ALIVE);
    assert_eq!(registry.snapshot()[0].peer(), Some(addr(PROXY)));
}

#[tokio::test]
async fn per_peer_limits_count_the_forwarded_client() {
    let registry = Registry::new();
    let layer = SseLayer::new()
        .registry(registry.clone())
        .trusted_proxies(["10.0.0.0/8"])
        .max_connections_per_peer(1);
    let mut open = Vec::new();
    // Two clients behind one proxy: each has its own slot.
    for client in ["203.0.113.7", "203.0.113.8"] {
        let (_, response) = through(&layer, request(PROXY, Some(client))).await;
        let mut body = response.into_body();
        assert_eq!(next(&mut body).await, KEEP_ALIVE);
        open.push(body);
    }
    assert_eq!(registry.len(), 2);
    // The same client again: over its cap.
    let (_, response) = through(&layer, request(PROXY, Some("203.0.113.7"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refusal = rest(&mut response.into_body()).await;
    assert!(
        refusal.starts_with(b": too many connections from this address\n"),
        "{refusal:?}"
    );
    assert_eq!(registry.len(), 2);
}
