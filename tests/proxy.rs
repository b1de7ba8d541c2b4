//! `examples/proxy.rs` over real sockets: its allowlist of upstreams (parsed URLs, never string
//! prefixes), its demo upstream with `ETag`s, and its stream of the demo board, patched by a
//! client into exactly what the upstream serves.

#[allow(dead_code, unused_imports)]
mod support {
    pub mod client;
    pub mod whatwg;
}

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use proxy::{Config, Demo, Upstreams};
use serde_json::Value;
use support::client::EventReader;
use tower_sse::poll::json_patch;

/// The example's app on `127.0.0.1:0` with `upstreams` (empty: its default, the demo API).
async fn start(upstreams: Vec<String>) -> (SocketAddr, Demo) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        addr: addr.to_string(),
        upstreams,
        min_interval: std::time::Duration::from_millis(10),
        ..Config::default()
    };
    let app = proxy::app(&config).unwrap();
    let demo = app.demo.clone();
    tokio::spawn(async move { axum::serve(listener, app.router).await });
    (addr, demo)
}

/// A server elsewhere that counts the requests it gets, and answers each with a redirect to
/// `location`, or with JSON.
async fn elsewhere(location: Option<String>) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let router = Router::new().fallback(get(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let location = location.clone();
        async move {
            match location {
                Some(to) => (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response(),
                None => axum::Json(serde_json::json!({"internal": "secret"})).into_response(),
            }
        }
    }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, requests)
}

async fn proxy_get(addr: SocketAddr, url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{addr}/proxy"))
        .query(&[("url", url), ("interval_ms", "10"), ("key", "id")])
        .header(header::ACCEPT, "text/event-stream")
        .send()
        .await
        .unwrap()
}

#[test]
fn upstreams_are_compared_as_parsed_urls_not_strings() {
    let port = 3000;
    let allowed = Upstreams::new([format!("http://127.0.0.1:{port}/demo/")]).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/demo/departures"),
        format!("http://127.0.0.1:{port}/demo/departures#top"),
        format!("http://127.0.0.1:{port}/demo/departures?"),
        format!("HTTP://127.0.0.1:{port}/demo/a/b"),
        // Escapes the URL parser writes itself: of a space, of a character outside ASCII.
        format!("http://127.0.0.1:{port}/demo/a b"),
        format!("http://127.0.0.1:{port}/demo/caf%C3%A9"),
        format!("http://127.0.0.1:{port}/demo/Zürich"),
        // The same address, written otherwise, is the same address.
        format!("http://2130706433:{port}/demo/departures"),
        format!("http://0x7f.1:{port}/demo/departures"),
        format!("http://127.0.0.1:{port}/demo/x/../departures"),
    ] {
        let checked = allowed
            .check(&url)
            .unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!(checked.host_str(), Some("127.0.0.1"), "{url}");
        assert!(checked.path().starts_with("/demo/"), "{url}");
        assert_eq!(checked.fragment(), None);
        assert_eq!(checked.query(), None);
    }
    for url in [
        // Credentials: the host is the part after @.
        format!("http://127.0.0.1:{port}@evil.example/demo/departures"),
        format!("http://user@127.0.0.1:{port}/demo/departures"),
        format!("http://evil.example#@127.0.0.1:{port}/demo/departures"),
        format!("http://127.0.0.1:{port}\\@evil.example/demo/"),
        // Another port, another scheme, another address.
        format!("http://127.0.0.1:{port}1/demo/departures"),
        format!("http://127.0.0.1:{port}0/demo/departures"),
        "http://127.0.0.1/demo/departures".to_owned(),
        format!("https://127.0.0.1:{port}/demo/departures"),
        format!("ftp://127.0.0.1:{port}/demo/departures"),
        format!("http://127.0.0.2:{port}/demo/departures"),
        format!("http://0.0.0.0:{port}/demo/departures"),
        format!("http://localhost:{port}/demo/departures"),
        format!("http://[::1]:{port}/demo/departures"),
        format!("http://[::ffff:127.0.0.1]:{port}/demo/departures"),
        format!("http://127.0.0.1.evil.example:{port}/demo/departures"),
        // Out of the folder: traversal, encoded, and a name that only starts the same.
        format!("http://127.0.0.1:{port}/demo/../admin"),
        format!("http://127.0.0.1:{port}/demo/%2e%2e/admin"),
        format!("http://127.0.0.1:{port}/demo/.%2E/admin"),
        format!("http://127.0.0.1:{port}/demo%2f..%2fadmin"),
        format!("http://127.0.0.1:{port}/demo/%2F..%2Fadmin"),
        format!("http://127.0.0.1:{port}/demo/..%5cadmin"),
        // What a server behind may decode or cut: `;` parameters, double encoding, any
        // escape the parser would not write.
        format!("http://127.0.0.1:{port}/demo/..;/admin"),
        format!("http://127.0.0.1:{port}/demo/x;jsessionid=1"),
        format!("http://127.0.0.1:{port}/demo/%252e%252e/admin"),
        format!("http://127.0.0.1:{port}/demo/%25"),
        format!("http://127.0.0.1:{port}/demo/%3b/admin"),
        format!("http://127.0.0.1:{port}/demo/%41"),
        format!("http://127.0.0.1:{port}/demo/%00"),
        format!("http://127.0.0.1:{port}/demo/%3F"),
        format!("http://127.0.0.1:{port}/demo/100%"),
        format!("http://127.0.0.1:{port}/demo/%zz"),
        // A query the prefix does not have: one poller per `cachebust`, or a URL for a server
        // that follows it.
        format!("http://127.0.0.1:{port}/demo/departures?cachebust=1"),
        format!("http://127.0.0.1:{port}/demo/x?next=http://169.254.169.254/"),
        format!("http://127.0.0.1:{port}/demonstration"),
        format!("http://127.0.0.1:{port}/demo"),
        format!("http://127.0.0.1:{port}/DEMO/departures"),
        format!("//127.0.0.1:{port}/demo/departures"),
        "/demo/departures".to_owned(),
        String::new(),
    ] {
        let refused = allowed.check(&url).unwrap_err();
        assert!(
            refused.to_string().starts_with("upstream refused: "),
            "{url}"
        );
    }

    // A prefix by name allows that name only: no address it may resolve to.
    let by_name = Upstreams::new(["http://localhost:8080/api"]).unwrap();
    assert!(by_name.check("http://LOCALHOST:8080/api").is_ok());
    assert!(by_name.check("http://localhost:8080/api/v1/board").is_ok());
    for url in [
        "http://127.0.0.1:8080/api",
        "http://[::1]:8080/api",
        "http://localhost.:8080/api",
        "http://localhost:8080/apiary",
        "http://localhost:80/api",
    ] {
        assert!(by_name.check(url).is_err(), "{url}");
    }
}

#[test]
fn a_prefix_with_a_query_allows_that_one_url() {
    let one = Upstreams::new(["http://10.0.0.5:8080/status?format=json"]).unwrap();
    let allowed = one
        .check("http://10.0.0.5:8080/status?format=json#now")
        .unwrap();
    assert_eq!(allowed.as_str(), "http://10.0.0.5:8080/status?format=json");
    for url in [
        "http://10.0.0.5:8080/status",
        "http://10.0.0.5:8080/status?",
        "http://10.0.0.5:8080/status?format=json&cachebust=1",
        "http://10.0.0.5:8080/status?format=xml",
        "http://10.0.0.5:8080/status/all?format=json",
    ] {
        assert!(one.check(url).is_err(), "{url}");
    }
}

#[test]
fn unusable_prefixes_are_refused_when_read() {
    for prefix in [
        "https://api.example.com/",
        "http://user:pw@api.example.com/",
        "http://api.example.com/v1?",
        "http://api.example.com/v1#top",
        "http://api.example.com/v1%2f",
        "http://api.example.com/v1;x/",
        "http://api.example.com/%252e/",
        "api.example.com/v1",
    ] {
        assert!(Upstreams::new([prefix]).is_err(), "{prefix}");
    }
}

#[test]
fn intervals_are_rounded_up_to_a_few() {
    let ms = std::time::Duration::from_millis;
    let floor = ms(500);
    for (asked, given) in [
        (0, 500),
        (1, 500),
        (500, 500),
        (501, 1000),
        (999, 1000),
        (1000, 1000),
        (1001, 2000),
        (4000, 5000),
        (45_000, 60_000),
        (3_600_000, 60_000),
    ] {
        assert_eq!(proxy::interval(ms(asked), floor), ms(given), "{asked} ms");
    }
    assert_eq!(proxy::interval(ms(11), ms(10)), ms(250));
    assert_eq!(proxy::interval(ms(2000), ms(3000)), ms(3000));
    assert_eq!(proxy::interval(ms(3001), ms(3000)), ms(5000));
    assert_eq!(proxy::interval(ms(90_000), ms(120_000)), ms(120_000));
}

#[tokio::test]
async fn a_disallowed_upstream_is_refused_and_never_requested() {
    let (target, requests) = elsewhere(None).await;
    let (addr, _) = start(Vec::new()).await;
    for url in [
        format!("http://{target}/"),
        format!("http://{addr}@{target}/demo/departures"),
        format!("http://{addr}/demo/../proxy"),
    ] {
        let response = proxy_get(addr, &url).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with("upstream refused: "), "{url}: {text}");
        assert!(
            !text.contains("/demo/"),
            "the refusal names no allowed upstream: {text}"
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    for (query, says) in [
        (vec![], "url is required"),
        (
            vec![
                ("url", format!("http://{addr}/demo/departures")),
                ("interval_ms", "soon".to_owned()),
            ],
            "interval_ms must be a whole number",
        ),
        (
            vec![
                ("url", format!("http://{addr}/demo/departures")),
                ("key", "k".repeat(65)),
            ],
            "key is longer than 64 bytes",
        ),
        (
            vec![
                ("url", format!("http://{addr}/demo/departures")),
                ("key", "id ".to_owned()),
            ],
            "key may have only letters, digits, _ and -",
        ),
    ] {
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/proxy"))
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.text().await.unwrap().contains(says), "{says}");
    }
}

#[tokio::test]
async fn a_redirect_to_a_disallowed_upstream_is_not_followed() {
    let (target, requests) = elsewhere(None).await;
    let (redirector, _) = elsewhere(Some(format!("http://{target}/"))).await;
    let (addr, _) = start(vec![format!("http://{redirector}/")]).await;
    let mut reader = EventReader::new(proxy_get(addr, &format!("http://{redirector}/board")).await);
    let error = reader.next().await.unwrap();
    assert_eq!(error.event_type, "error");
    assert!(
        error.data.contains("redirects are not followed"),
        "{}",
        error.data
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_demo_upstream_answers_its_etag_with_304() {
    let (addr, demo) = start(Vec::new()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/demo/departures");
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.headers()[header::CONTENT_TYPE], "application/json");
    let etag = first.headers()[header::ETAG].clone();
    let board: Value = first.json().await.unwrap();
    assert_eq!(board["departures"].as_array().unwrap().len(), 12);
    let again = client
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    demo.tick();
    let changed = client
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()[header::ETAG], etag);
}

#[tokio::test]
async fn the_proxy_streams_the_demo_board_exactly() {
    let (addr, demo) = start(Vec::new()).await;
    for path in ["/demo/departures", "/demo/departures-large"] {
        let upstream = format!("http://{addr}{path}");
        let mut reader = EventReader::new(proxy_get(addr, &upstream).await);
        let snapshot = reader.next().await.unwrap();
        assert_eq!(snapshot.event_type, "snapshot");
        let mut state: Value = serde_json::from_str(&snapshot.data).unwrap();
        for _ in 0..5 {
            demo.tick();
            let expected: Value = reqwest::get(&upstream).await.unwrap().json().await.unwrap();
            // The board changes on each tick: once the stream has its version, they match.
            while state["version"] != expected["version"] {
                let event = reader.next().await.unwrap();
                assert_eq!(event.event_type, "patch", "{event:?}");
                let patch: json_patch::Patch = serde_json::from_str(&event.data).unwrap();
                json_patch::patch(&mut state, &patch).unwrap();
            }
            assert_eq!(state, expected, "{path}");
        }
    }
}

/// The example's app on `127.0.0.1:0` with `config` (its `addr` set), and its poller.
async fn start_with(config: Config) -> (SocketAddr, tower_sse::poll::Poller) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        addr: addr.to_string(),
        ..config
    };
    let app = proxy::app(&config).unwrap();
    let poller = app.poller.clone();
    tokio::spawn(async move { axum::serve(listener, app.router).await });
    (addr, poller)
}

/// `GET /proxy?…` as an `EventSource` would send it, with `query` and `headers`.
async fn open_stream(
    addr: SocketAddr,
    query: &[(&str, String)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("http://{addr}/proxy"))
        .query(query)
        .header(header::ACCEPT, "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn clients_cannot_make_a_poller_each() {
    let (addr, poller) = start_with(Config {
        max_sources: 3,
        ..Config::default()
    })
    .await;
    let url = format!("http://{addr}/demo/departures");
    // Another interval each: one poller (the interval rounded up to 1 s).
    for ms in 501..541 {
        let response = open_stream(
            addr,
            &[("url", url.clone()), ("interval_ms", ms.to_string())],
            &[],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(poller.running(), 1, "one poller for 501 to 540 ms");
    // Another query each: refused, no poller.
    for n in 0..10 {
        let busted = format!("{url}?cachebust={n}");
        let response = open_stream(addr, &[("url", busted)], &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(poller.running(), 1);
    // Another key each: as many pollers as MAX_SOURCES, then a retry hint and the end.
    for key in ["a", "b"] {
        let response = open_stream(addr, &[("url", url.clone()), ("key", key.into())], &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(poller.running(), 3);
    let refused = open_stream(addr, &[("url", url.clone()), ("key", "c".into())], &[]).await;
    assert_eq!(refused.status(), StatusCode::OK);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("\n: as many sources are polled as may be; try again later\n"),
        "{body}"
    );
    assert!(body.contains("\nretry: "), "{body}");
    assert_eq!(poller.running(), 3);
}

#[tokio::test]
async fn a_cross_origin_stream_request_starts_no_poller() {
    let (addr, poller) = start_with(Config::default()).await;
    let response = open_stream(
        addr,
        &[("url", format!("http://{addr}/demo/departures"))],
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(poller.running(), 0);

    // Nor one from an `<img>` or a no-cors `fetch` of another site, which sends no `Origin`.
    for site in ["cross-site", "same-site"] {
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/proxy"))
            .query(&[("url", format!("http://{addr}/demo/departures"))])
            .header(header::ACCEPT, "*/*")
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{site}");
    }
    assert_eq!(poller.running(), 0);
}

#[tokio::test]
async fn an_upstream_named_localhost_is_polled() {
    // `localhost` resolves to loopback, which a name from DNS may not: the operator named it
    // (as the default UPSTREAMS do).
    let (addr, _) = start(Vec::new()).await;
    let upstream = format!("http://localhost:{}/demo/departures", addr.port());
    let mut reader = EventReader::new(proxy_get(addr, &upstream).await);
    let snapshot = reader.next().await.unwrap();
    assert_eq!(snapshot.event_type, "snapshot");
    let board: Value = serde_json::from_str(&snapshot.data).unwrap();
    assert_eq!(board["departures"].as_array().unwrap().len(), 12);
}
