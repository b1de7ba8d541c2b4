//! URL sources' HTTP client (`super::http`): host names that resolve to addresses that are not
//! public, the message of a `304` to a request that was not conditional, and answers taken as
//! sent (no content coding asked for). Against a server on `127.0.0.1:0`, with names resolved
//! by a table rather than DNS.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::FutureExt;
use reqwest::dns::Resolve;
use serde_json::json;

use super::http::{Client, Lookup, Validators, is_public};
use super::source::{Failure, Fetched};

/// A server that counts its requests, keeps their `Accept-Encoding`, and answers `status`
/// (JSON with `200`).
async fn server(status: StatusCode) -> (SocketAddr, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let encodings = Arc::new(Mutex::new(Vec::new()));
    let (counted, kept) = (requests.clone(), encodings.clone());
    let router = Router::new().fallback(get(move |headers: HeaderMap| {
        counted.fetch_add(1, Ordering::SeqCst);
        kept.lock().unwrap().push(
            headers
                .get(header::ACCEPT_ENCODING)
                .map_or("", |value| value.to_str().unwrap())
                .to_owned(),
        );
        async move {
            if status == StatusCode::OK {
                axum::Json(json!({"ok": true})).into_response()
            } else {
                status.into_response()
            }
        }
    }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, requests, encodings)
}

/// Resolves from a table: any other name fails (and `localhost` is never asked).
fn table(entries: &[(&'static str, &[&str])]) -> Lookup {
    let entries: Vec<(&'static str, Vec<IpAddr>)> = entries
        .iter()
        .map(|(name, ips)| (*name, ips.iter().map(|ip| ip.parse().unwrap()).collect()))
        .collect();
    Arc::new(move |host: String| {
        let found = entries
            .iter()
            .find(|(name, _)| *name == host)
            .map(|(_, ips)| ips.clone())
            .ok_or_else(|| std::io::Error::other(format!("{host}: no such name")));
        async move { found }.boxed()
    })
}

fn client(private_names: bool, lookup: Lookup) -> Client {
    Client::with_lookup(Duration::from_secs(5), 1 << 20, private_names, lookup)
}

async fn fetch(client: &Client, url: &str) -> Result<serde_json::Value, Failure> {
    match client
        .fetch(&url.parse().unwrap(), &Validators::default())
        .await?
    {
        Fetched::Value(value, _) => Ok(value),
        Fetched::NotModified => panic!("{url}: 304 to a request that was not conditional"),
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_not_connected_to() {
    let (addr, requests, _) = server(StatusCode::OK).await;
    let port = addr.port();
    let lookup = table(&[
        ("evil.test", &["127.0.0.1"]),
        ("inside.test", &["10.0.0.5"]),
    ]);
    let strict = client(false, lookup.clone());
    for name in ["evil.test", "inside.test"] {
        let failure = fetch(&strict, &format!("http://{name}:{port}/"))
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            Failure::new("the upstream's name does not resolve to a public address"),
            "{name}"
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    // What the operator wrote as an address, or as `localhost`, is connected to as written.
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://LOCALHOST.:{port}/"),
    ] {
        assert_eq!(fetch(&strict, &url).await, Ok(json!({"ok": true})), "{url}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    // With private names allowed, a name goes where it resolves.
    let lenient = client(true, lookup);
    let url = format!("http://evil.test:{port}/");
    assert_eq!(fetch(&lenient, &url).await, Ok(json!({"ok": true})));
}

#[tokio::test]
async fn the_resolver_keeps_only_public_addresses() {
    let lookup = table(&[(
        "mixed.test",
        &[
            "127.0.0.1",
            "93.184.215.14",
            "169.254.169.254",
            "2606:2800:21f:cb07::1",
            "::1",
        ],
    )]);
    let resolver = super::http::resolver(lookup.clone(), false);
    let name = reqwest::dns::Name::from_str("mixed.test").unwrap();
    let addrs: Vec<IpAddr> = resolver
        .resolve(name)
        .await
        .unwrap()
        .map(|addr| addr.ip())
        .collect();
    assert_eq!(
        addrs,
        ["93.184.215.14", "2606:2800:21f:cb07::1"].map(|ip| ip.parse::<IpAddr>().unwrap())
    );
    let resolver = super::http::resolver(lookup, true);
    let name = reqwest::dns::Name::from_str("mixed.test").unwrap();
    assert_eq!(resolver.resolve(name).await.unwrap().count(), 5);
}

#[test]
fn addresses_that_are_not_public() {
    for ip in [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "198.18.0.1",
        "240.0.0.1",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::10.0.0.1",
        "64:ff9b::7f00:1",
    ] {
        assert!(!is_public(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "93.184.215.14",
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "2606:2800:21f:cb07::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        assert!(is_public(ip.parse().unwrap()), "{ip}");
    }
}

#[tokio::test]
async fn a_304_to_a_request_that_was_not_conditional_says_so() {
    let (addr, _, _) = server(StatusCode::NOT_MODIFIED).await;
    let failure = fetch(&client(false, table(&[])), &format!("http://{addr}/"))
        .await
        .unwrap_err();
    assert_eq!(
        failure.message,
        "the upstream answered 304 to a request that was not conditional"
    );
    assert_eq!(failure.status, Some(304));
}

#[tokio::test]
async fn no_content_coding_is_asked_for() {
    // The dev-dependencies enable reqwest's gzip, br and zstd: the poll client asks for none,
    // so that the body cap counts what the upstream sends.
    let (addr, _, encodings) = server(StatusCode::OK).await;
    fetch(&client(false, table(&[])), &format!("http://{addr}/"))
        .await
        .unwrap();
    assert_eq!(*encodings.lock().unwrap(), [""]);
}
