//! The hub server of `examples/hub.rs`, secure by default, over real sockets: publishing and
//! the admin routes need a token, private topics need one (replay included), selectors decide,
//! bad tokens are refused with why, a stream ends with its token, cross-site posts and unknown
//! hosts never publish, and the hub's own event names cannot be forged. Then the startup: the
//! default configuration is not open, and the tokens it prints work.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use serde_json::Value;
use support::client::{EventReader, GUARD};
use support::hub::hub_server::{self, JWT_LEEWAY, KeySource, Keys, startup_message, token_command};
use support::hub::{Config, Server, bearer, config, publisher_token, token};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower_sse::auth::jwt::{Claims, Jwt};
use tower_sse::hub::RESERVED_EVENT_NAMES;

const RSA_PRIVATE: &[u8] = include_bytes!("data/test-only-rsa-private.pem");
const RSA_PUBLIC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/test-only-rsa-public.pem"
);

/// A hub server on which only `news` is public.
async fn with_private_topics() -> Server {
    Server::start(Config {
        public_topics: vec!["news".to_owned()],
        ..config()
    })
    .await
}

/// `POST path` with `body` and these headers.
async fn post(server: &Server, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server.client.post(server.url(path)).body("data");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// `GET path` with these headers.
async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The `WWW-Authenticate` value of a response.
fn challenge(headers: &HeaderMap) -> String {
    headers
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends a raw HTTP/1.1 request head and returns the response's status code.
async fn raw_status(addr: SocketAddr, head: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    while !received.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .expect("a status line within the guard time")
            .unwrap();
        assert!(n > 0, "the server closed before a status line");
        received.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&received);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Publishing

#[tokio::test]
async fn an_anonymous_publish_or_close_is_refused_with_401_and_stores_nothing() {
    let server = Server::start(config()).await;
    for path in ["/publish/news", "/close/news"] {
        let response = post(&server, path, &[]).await;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(challenge(response.headers()), "Bearer", "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains("needs a token"), "{path}: {body:?}");
    }
    // Even a body the hub would refuse is refused for the token first.
    let response = post(&server, "/publish/news?event=gap", &[]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(server.hub.stats().published, 0);
    assert!(server.hub.topic_info("news").await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_without_a_matching_publish_selector_is_refused_with_403() {
    let server = Server::start(config()).await;
    let reader = token(Claims::new().subscribe(["*"]));
    let response = post(
        &server,
        "/publish/news",
        &[("authorization", &bearer(&reader))],
    )
    .await;
    assert_eq!(response.status(), 403);
    let body = response.text().await.unwrap();
    assert!(body.contains("no publish selector"), "{body:?}");
    let response = post(
        &server,
        "/close/news",
        &[("authorization", &bearer(&reader))],
    )
    .await;
    assert_eq!(response.status(), 403, "closing is publishing");
    assert_eq!(server.hub.stats().published, 0);
}

#[tokio::test]
async fn publish_selectors_exact_prefix_and_star_decide_through_the_server() {
    let server = Server::start(config()).await;
    let cases = [
        ("news", "news", 200),
        ("news", "news2", 403),
        ("news", "new", 403),
        ("room/*", "room/1", 200),
        ("room/*", "room/1/chat", 200),
        ("room/*", "rooms", 403),
        ("room/*", "room", 403),
        ("*", "anything/at/all", 200),
    ];
    for (selector, topic, status) in cases {
        let publisher = token(Claims::new().publish([selector]));
        let response = post(
            &server,
            &format!("/publish/{topic}"),
            &[("authorization", &bearer(&publisher))],
        )
        .await;
        assert_eq!(
            response.status(),
            status,
            "publish {selector:?} on {topic:?}"
        );
    }
}

#[tokio::test]
async fn a_reserved_event_name_is_refused_with_400_naming_the_reserved_names() {
    let server = Server::start(config()).await;
    let mut reader = server.subscribe("news", None).await;
    server.until_open(1).await;
    for name in ["gap", "end", "done", "error", "cancelled", "open"] {
        assert!(RESERVED_EVENT_NAMES.contains(&name));
        let response = server
            .publish_raw(&format!("/publish/news?event={name}"), "forged")
            .await;
        assert_eq!(response.status(), 400, "{name}");
        let body = response.text().await.unwrap();
        assert!(body.contains("reserved"), "{name}: {body:?}");
        for reserved in RESERVED_EVENT_NAMES {
            assert!(body.contains(reserved), "{name}: {body:?} names {reserved}");
        }
    }
    assert_eq!(server.hub.stats().published, 0);
    // Other names go through: the subscriber's first event is this one, no forged one before.
    let response = server.publish_raw("/publish/news?event=gaps", "fine").await;
    assert_eq!(response.status(), 200);
    let event = reader.next().await.unwrap();
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str()),
        ("gaps", "fine")
    );
}

// ---------------------------------------------------------------------------------------------
// Cross-site requests and hosts

#[tokio::test]
async fn a_cross_site_simple_post_never_publishes_even_with_a_valid_token_cookie() {
    let server = Server::start(config()).await;
    let cookie = format!("sse_token={}", publisher_token());
    for origin in ["https://evil.example", "null"] {
        let response = post(
            &server,
            "/publish/news",
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("origin", origin),
                ("cookie", &cookie),
            ],
        )
        .await;
        assert_eq!(response.status(), 403, "Origin: {origin}");
    }
    // A browser that says where the request comes from, without an Origin.
    let response = post(
        &server,
        "/publish/news",
        &[("sec-fetch-site", "cross-site"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(response.status(), 403, "Sec-Fetch-Site: cross-site");
    assert_eq!(server.hub.stats().published, 0);

    // From the server's own page, the cookie alone does not publish either: a write needs the
    // token in the Authorization header, which is what the page sends.
    let own = format!("http://{}", server.addr);
    let response = post(
        &server,
        "/publish/news",
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", &own),
            ("cookie", &cookie),
        ],
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(server.hub.stats().published, 0);
    // The control: the same token in the header, from the server's own page, publishes.
    let authorization = format!("Bearer {}", cookie.trim_start_matches("sse_token="));
    let response = post(
        &server,
        "/publish/news",
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", &own),
            ("authorization", &authorization),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.hub.stats().published, 1);
}

#[tokio::test]
async fn an_allowed_origin_publishes_with_a_token_after_a_preflight() {
    let app = "http://app.localhost:8080";
    let server = Server::start(Config {
        allow_origins: vec![app.to_owned()],
        ..config()
    })
    .await;
    let preflight = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/publish/news"))
        .header("origin", app)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let response = post(
        &server,
        "/publish/news",
        &[
            ("origin", app),
            ("authorization", &bearer(&publisher_token())),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], app);
    // Without the token, the allowed origin is refused too.
    let response = post(&server, "/publish/news", &[("origin", app)]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn an_unknown_host_is_refused_with_421_and_the_default_hosts_are_served() {
    let server = Server::start(config()).await;
    let port = server.addr.port();
    let token = publisher_token();
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "127.0.0.1:1",
    ] {
        let status = raw_status(
            server.addr,
            &format!("GET /events/news HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream"),
        )
        .await;
        assert_eq!(status, 421, "GET with Host: {host}");
        let status = raw_status(
            server.addr,
            &format!(
                "POST /publish/news HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Length: 1\r\n\r\nx"
            ),
        )
        .await;
        assert_eq!(status, 421, "POST with Host: {host}");
    }
    assert_eq!(server.hub.stats().published, 0);
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let status = raw_status(
            server.addr,
            &format!("GET /health HTTP/1.1\r\nHost: {host}"),
        )
        .await;
        assert_eq!(status, 200, "Host: {host}");
    }
}

#[test]
fn the_default_hosts_are_the_listen_address_and_the_loopback_names_on_its_port() {
    let hosts = |addr: &str| {
        Config {
            addr: addr.to_owned(),
            ..Config::default()
        }
        .allowed_hosts()
    };
    assert_eq!(
        hosts("127.0.0.1:3000"),
        ["127.0.0.1:3000", "localhost:3000", "[::1]:3000"]
    );
    assert_eq!(
        hosts("192.168.1.5:8080"),
        [
            "192.168.1.5:8080",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080"
        ]
    );
    // Every address: no client names it; the message says to set ALLOW_HOSTS.
    assert_eq!(
        hosts("0.0.0.0:3000"),
        ["localhost:3000", "127.0.0.1:3000", "[::1]:3000"]
    );
    assert_eq!(
        hosts("[::]:3000"),
        ["localhost:3000", "127.0.0.1:3000", "[::1]:3000"]
    );
    // Not bound yet: any port.
    assert_eq!(hosts("127.0.0.1:0"), ["127.0.0.1", "localhost", "[::1]"]);
    let listed = Config {
        allow_hosts: vec!["push.example.com".to_owned()],
        ..Config::default()
    };
    assert_eq!(listed.allowed_hosts(), ["push.example.com"]);
}

// ---------------------------------------------------------------------------------------------
// Subscribing

#[tokio::test]
async fn a_private_topic_is_refused_without_a_token_and_read_with_one_on_replay_too() {
    let server = with_private_topics().await;
    let topic = "user/42/inbox";
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(server.publish(topic, &format!("message {n}")).await);
    }
    let path = format!("/events/{topic}");

    // Without a token: 401, first connection and reconnect alike, and the topic info too.
    let response = get(&server, &path, &[]).await;
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(body.contains("private"), "{body:?}");
    let response = get(&server, &path, &[("last-event-id", &ids[0])]).await;
    assert_eq!(response.status(), 401, "a replay is no way around it");
    let response = get(&server, &format!("{path}?lastEventId={}", ids[0]), &[]).await;
    assert_eq!(response.status(), 401);
    let response = get(&server, &format!("/topics/{topic}"), &[]).await;
    assert_eq!(response.status(), 401);

    // Someone else's token: 403, replay included.
    let other = token(Claims::new().subscribe(["user/43/*"]));
    let response = get(
        &server,
        &path,
        &[
            ("authorization", &bearer(&other)),
            ("last-event-id", &ids[0]),
        ],
    )
    .await;
    assert_eq!(response.status(), 403);

    // The owner's token, in each place a client can put it: the replay after the first id.
    let own = token(Claims::new().subscribe(["user/42/*"]));
    let header = bearer(&own);
    let cookie = format!("theme=dark; sse_token={own}");
    let ways: [(String, Vec<(&str, &str)>); 3] = [
        (path.clone(), vec![("authorization", &header)]),
        (path.clone(), vec![("cookie", &cookie)]),
        (format!("{path}?authorization={own}"), vec![]),
    ];
    for (url, mut headers) in ways {
        headers.push(("last-event-id", &ids[0]));
        let mut reader = EventReader::new(get(&server, &url, &headers).await);
        let replayed: Vec<String> = reader
            .take(2)
            .await
            .into_iter()
            .map(|e| e.last_event_id)
            .collect();
        assert_eq!(replayed, ids[1..], "{url} {headers:?}");
    }
    let response = get(
        &server,
        &format!("/topics/{topic}"),
        &[("authorization", &header)],
    )
    .await;
    assert_eq!(response.status(), 200);

    // The public topic needs nothing.
    let response = get(&server, "/events/news", &[]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn subscribe_selectors_exact_prefix_and_star_decide_through_the_server() {
    let server = Server::start(Config {
        public_topics: Vec::new(),
        ..config()
    })
    .await;
    let cases = [
        ("room/1", "room/1", 200),
        ("room/1", "room/10", 403),
        ("room/*", "room/10", 200),
        ("room/*", "rooms", 403),
        ("*", "anything", 200),
    ];
    for (selector, topic, status) in cases {
        let reader = token(Claims::new().subscribe([selector]));
        let response = get(
            &server,
            &format!("/events/{topic}"),
            &[("authorization", &bearer(&reader))],
        )
        .await;
        assert_eq!(
            response.status(),
            status,
            "subscribe {selector:?} on {topic:?}"
        );
    }
    // With no public topic, nothing is open.
    let response = get(&server, "/events/news", &[]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn expired_wrong_key_and_malformed_tokens_are_refused_with_401_saying_why() {
    let server = Server::start(config()).await;
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let expired = token(
        Claims::new()
            .publish(["*"])
            .subscribe(["*"])
            .expires_at(an_hour_ago),
    );
    let other_key = Jwt::hs256("another server's secret, 32 bytes or more")
        .unwrap()
        .sign(
            &Claims::new()
                .publish(["*"])
                .subscribe(["*"])
                .expires_in(Duration::from_secs(3600)),
        )
        .unwrap();
    let cases = [
        (expired.as_str(), "expired"),
        (other_key.as_str(), "signature does not match"),
        ("not-a-token", "well-formed"),
    ];
    for (bad, why) in cases {
        let header = bearer(bad);
        // A publish, and a subscription even to a public topic: the client should know.
        for response in [
            post(&server, "/publish/news", &[("authorization", &header)]).await,
            get(&server, "/events/news", &[("authorization", &header)]).await,
        ] {
            assert_eq!(response.status(), 401, "{why}");
            let challenge = challenge(response.headers());
            assert!(challenge.contains("invalid_token"), "{challenge}");
            assert!(challenge.contains(why), "{challenge} says {why:?}");
            let body = response.text().await.unwrap();
            assert!(body.contains(why), "{body:?} says {why:?}");
        }
    }
    assert_eq!(server.hub.stats().published, 0);
}

#[tokio::test]
async fn a_stream_ends_with_a_retry_hint_when_its_token_expires() {
    let server = with_private_topics().await;
    // Accepted for the leeway after `exp` (whole seconds): this token expires for the server
    // in 2 to 3 s.
    let exp = SystemTime::now() + Duration::from_secs(3) - JWT_LEEWAY;
    let short = token(Claims::new().subscribe(["private"]).expires_at(exp));
    let response = get(
        &server,
        "/events/private",
        &[("authorization", &bearer(&short))],
    )
    .await;
    let mut reader = EventReader::new(response);
    server.until_open(1).await;
    let id = server.publish("private", "before the end").await;
    assert_eq!(reader.next().await.unwrap().last_event_id, id);

    // Reading to the stream's end is the wait: the server ends it when the token expires.
    assert!(
        reader.until_end().await.is_empty(),
        "nothing after the event"
    );
    assert!(
        reader.retry().is_some(),
        "a retry: hint, so the client comes back"
    );
    // It comes back with the same token: refused, so it needs a fresh one.
    let response = get(
        &server,
        "/events/private",
        &[("authorization", &bearer(&short)), ("last-event-id", &id)],
    )
    .await;
    assert_eq!(response.status(), 401);
    let fresh = token(Claims::new().subscribe(["private"]));
    let later = server.publish("private", "while away").await;
    let response = get(
        &server,
        "/events/private",
        &[("authorization", &bearer(&fresh)), ("last-event-id", &id)],
    )
    .await;
    let mut reader = EventReader::new(response);
    assert_eq!(reader.next().await.unwrap().last_event_id, later);
}

// ---------------------------------------------------------------------------------------------
// Admin

#[tokio::test]
async fn connections_and_the_admin_page_need_an_admin_token() {
    let server = Server::start(config()).await;
    let not_admin = bearer(&token(Claims::new().publish(["*"]).subscribe(["*"])));
    let admin = bearer(&token(Claims::new().admin(true)));
    for path in ["/connections", "/admin"] {
        assert_eq!(get(&server, path, &[]).await.status(), 401, "{path}");
        let response = get(&server, path, &[("authorization", &not_admin)]).await;
        assert_eq!(response.status(), 403, "{path}");
        let response = get(&server, path, &[("authorization", &admin)]).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = get(&server, "/connections", &[("authorization", &admin)]).await;
    let list: Value = response.json().await.unwrap();
    assert!(list.is_array(), "{list}");
}

// ---------------------------------------------------------------------------------------------
// Keys and startup

/// The hub server with `config` (not bound yet) on a free port, and what it prints at start.
async fn start_printing(mut config: Config) -> (Server, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.addr = listener.local_addr().unwrap().to_string();
    let app = hub_server::app(&config).await.unwrap();
    let message = startup_message(&config, app.keys.as_ref().unwrap()).unwrap();
    (
        Server::serve_on(listener, app, reqwest::Client::new()),
        message,
    )
}

/// The value printed after `prefix` on a line of `message`.
fn printed<'a>(message: &'a str, prefix: &str) -> &'a str {
    message
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line with {prefix:?} in:\n{message}"))
        .trim()
}

#[tokio::test]
async fn without_a_configured_key_the_server_is_not_open_and_the_printed_tokens_work() {
    let (server, message) = start_printing(Config {
        jwt_secret: None,
        ..config()
    })
    .await;
    let base = format!("http://{}", server.addr);
    // Not open: the same as with a secret.
    let response = post(&server, "/publish/news", &[]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(get(&server, "/connections", &[]).await.status(), 401);

    // The publisher token, and the curl line to use it.
    let publisher = printed(&message, "TOKEN=");
    assert!(
        message.contains(&format!(
            "curl -H \"Authorization: Bearer $TOKEN\" -d hello {base}/publish/news"
        )),
        "{message}"
    );
    let response = post(
        &server,
        "/publish/news",
        &[("authorization", &bearer(publisher))],
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = get(
        &server,
        "/connections",
        &[("authorization", &bearer(publisher))],
    )
    .await;
    assert_eq!(
        response.status(),
        403,
        "the publisher token is no admin token"
    );

    // The admin page's address carries an admin token.
    let admin_url = printed(&message, "admin page, for 24 h: ");
    let admin = admin_url
        .strip_prefix(&format!("{base}/admin?authorization="))
        .unwrap_or_else(|| panic!("{admin_url}"));
    let response = get(
        &server,
        "/connections",
        &[("authorization", &bearer(admin))],
    )
    .await;
    assert_eq!(response.status(), 200);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(admin_url).send().await.unwrap();
    assert_eq!(
        response.status(),
        303,
        "the admin page takes the token into a cookie"
    );

    // A token from any other key is refused: the random secret is this run's own.
    let response = post(
        &server,
        "/publish/news",
        &[("authorization", &bearer(&publisher_token()))],
    )
    .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn with_jwt_secret_nothing_secret_is_printed_and_hub_token_mints_working_tokens() {
    let config = Config {
        public_topics: vec!["news".to_owned()],
        ..config()
    };
    let (server, message) = start_printing(config.clone()).await;
    assert!(!message.contains("TOKEN="), "{message}");
    assert!(!message.contains(support::hub::SECRET), "{message}");
    assert!(message.contains("public topics: news"), "{message}");

    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let minted = token_command(
        &config,
        &args(&["--subscribe", "user/42/*", "--ttl", "600"]),
    )
    .unwrap();
    let response = get(
        &server,
        "/events/user/42/inbox",
        &[("authorization", &bearer(&minted))],
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = get(&server, "/events/user/42/inbox", &[]).await;
    assert_eq!(response.status(), 401);
    let response = post(
        &server,
        "/publish/user/42/inbox",
        &[("authorization", &bearer(&minted))],
    )
    .await;
    assert_eq!(response.status(), 403, "a subscribe token does not publish");

    for (bad, says) in [
        (args(&[]), "--publish, --subscribe or --admin"),
        (args(&["--publish"]), "needs a value"),
        (args(&["--ttl", "soon", "--admin"]), "whole seconds"),
        (args(&["--nope"]), "unknown argument"),
    ] {
        let err = token_command(&config, &bad).unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    let without = Config {
        jwt_secret: None,
        ..config
    };
    let err = token_command(&without, &args(&["--admin"])).unwrap_err();
    assert!(err.contains("JWT_SECRET is not set"), "{err}");
}

#[tokio::test]
async fn with_jwt_public_key_rs256_tokens_are_verified_and_the_server_mints_none() {
    let config = Config {
        jwt_secret: None,
        jwt_public_key: Some(RSA_PUBLIC_PATH.into()),
        ..config()
    };
    let (server, message) = start_printing(config.clone()).await;
    assert!(message.contains("RS256"), "{message}");
    assert!(message.contains("cannot mint"), "{message}");
    assert!(!message.contains("TOKEN="), "{message}");

    let claims = Claims::new()
        .publish(["*"])
        .expires_in(Duration::from_secs(3600));
    let signed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap();
    let response = post(
        &server,
        "/publish/news",
        &[("authorization", &bearer(&signed))],
    )
    .await;
    assert_eq!(response.status(), 200);
    // An HS256 token, whatever its secret, is not what this server accepts.
    let response = post(
        &server,
        "/publish/news",
        &[("authorization", &bearer(&publisher_token()))],
    )
    .await;
    assert_eq!(response.status(), 401);

    let err = token_command(&config, &["--publish".into(), "*".into()]).unwrap_err();
    assert!(err.contains("cannot sign"), "{err}");
}

#[tokio::test]
async fn bad_key_settings_are_refused_naming_the_variable_and_never_the_secret() {
    let short = "too short a secret";
    let err = hub_server::app(&Config {
        jwt_secret: Some(short.into()),
        ..config()
    })
    .await
    .err()
    .unwrap();
    assert!(err.starts_with("JWT_SECRET: "), "{err}");
    assert!(err.contains("openssl rand"), "{err}");
    assert!(!err.contains(short), "{err}");

    let err = hub_server::app(&Config {
        jwt_public_key: Some("/no/such/key.pem".into()),
        ..config()
    })
    .await
    .err()
    .unwrap();
    assert_eq!(err, "set JWT_SECRET or JWT_PUBLIC_KEY, not both");

    let err = hub_server::app(&Config {
        jwt_secret: None,
        jwt_public_key: Some("/no/such/key.pem".into()),
        ..config()
    })
    .await
    .err()
    .unwrap();
    assert!(err.starts_with("JWT_PUBLIC_KEY: "), "{err}");
    assert!(err.contains("/no/such/key.pem"), "{err}");

    let err = hub_server::app(&Config {
        allow_hosts: vec!["https://push.example.com".to_owned()],
        ..config()
    })
    .await
    .err()
    .unwrap();
    assert!(err.starts_with("ALLOW_HOSTS: "), "{err}");
    // A secret never shows in a debug print of the settings.
    let debug = format!("{:?}", config());
    assert!(!debug.contains(support::hub::SECRET), "{debug}");
}

#[test]
fn listening_on_every_address_the_startup_message_asks_for_allow_hosts() {
    let config = Config {
        addr: "0.0.0.0:3000".to_owned(),
        ..config()
    };
    let keys = Keys::from_config(&config).unwrap();
    assert_eq!(keys.source, KeySource::Secret);
    let message = startup_message(&config, &keys).unwrap();
    assert!(message.contains("set ALLOW_HOSTS"), "{message}");
    assert!(
        message.contains("localhost:3000, 127.0.0.1:3000, [::1]:3000"),
        "{message}"
    );
    // The address it prints is one a browser on this machine can open.
    assert_eq!(config.base_url(), "http://127.0.0.1:3000");
}
