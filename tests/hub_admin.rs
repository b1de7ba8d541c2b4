//! The hub server's admin page (`examples/hub/admin.rs`) over real sockets: a hub whose policy
//! is `auth::jwt::Jwt`, the admin router merged in before `SseLayer`, served by axum on
//! `127.0.0.1:0`, driven by reqwest and read with the WHATWG parser.

#[allow(dead_code, unused_imports)]
mod support {
    pub mod client;
    pub mod whatwg;
}

#[path = "../examples/hub/admin.rs"]
mod admin;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use support::client::EventReader;
use tokio::task::JoinHandle;
use tower_sse::auth::Identity;
use tower_sse::auth::jwt::{Claims, Jwt};
use tower_sse::registry::Connection;
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

const SECRET: &[u8] = b"tests/hub_admin.rs: a 32-byte or longer secret";

/// A label no page may render as markup, that would break an SSE line if written raw, and
/// that carries a forged field.
const HOSTILE_LABEL: &str = "<img src=x onerror=alert(1)>\"'\\\n\rdata: forged\u{2028}</script>";

/// A topic name the hub itself would refuse; `Activity` may still be handed one.
const HOSTILE_TOPIC: &str = "</script><b onclick=\"x\">\n";

fn policy() -> Jwt {
    Jwt::hs256(SECRET).unwrap().leeway(Duration::ZERO)
}

fn token(claims: Claims) -> String {
    policy().sign(&claims).unwrap()
}

fn in_an_hour() -> Claims {
    Claims::new().expires_in(Duration::from_secs(3600))
}

fn admin_token() -> String {
    token(in_an_hour().admin(true))
}

/// Everything but admin.
fn user_token() -> String {
    token(in_an_hour().subscribe(["*"]).publish(["*"]))
}

#[derive(Deserialize)]
struct LabelParam {
    label: Option<String>,
}

async fn subscribe(
    State(hub): State<Hub>,
    who: Identity,
    Path(topic): Path<String>,
    Query(params): Query<LabelParam>,
    connection: Option<Connection>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    if let (Some(connection), Some(label)) = (connection, params.label) {
        connection.set_label(label);
    }
    hub.subscribe_as(&who, &topic, last).await
}

#[derive(Clone)]
struct AppState {
    hub: Hub,
    activity: admin::Activity,
}

impl axum::extract::FromRef<AppState> for Hub {
    fn from_ref(state: &AppState) -> Hub {
        state.hub.clone()
    }
}

async fn publish(
    State(state): State<AppState>,
    who: Identity,
    Path(topic): Path<String>,
    body: String,
) -> Result<String, HubError> {
    let published = state
        .hub
        .publish_as(&who, &topic, Event::data(body))
        .await?;
    state.activity.record_publish(&topic);
    Ok(published.id().to_owned())
}

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    activity: admin::Activity,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let hub = Hub::builder().policy(policy()).memory();
        let activity = admin::Activity::default();
        let app = Router::new()
            .route("/events/{*topic}", get(subscribe))
            .route("/publish/{*topic}", post(publish))
            .merge(admin::router(hub.clone(), activity.clone()))
            .layer(SseLayer::new().registry(hub.registry()))
            .with_state(AppState {
                hub,
                activity: activity.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
            // Redirects are what some tests look at: never followed.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            activity,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` with `cookie` as the `Cookie` header and `bearer` as a Bearer token, if any.
    async fn get(
        &self,
        path: &str,
        cookie: Option<&str>,
        bearer: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    async fn publish(&self, topic: &str, data: &str) -> String {
        let response = self
            .client
            .post(self.url(&format!("/publish/{topic}")))
            .bearer_auth(user_token())
            .body(data.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// A subscriber to `topic` labelled `label`; its head has arrived, so it is in the
    /// registry.
    async fn subscriber(&self, topic: &str, label: &str) -> reqwest::Response {
        let response = self
            .client
            .get(self.url(&format!("/events/{topic}")))
            .query(&[("label", label)])
            .bearer_auth(user_token())
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response
    }

    /// The admin stream, with an admin cookie.
    async fn admin_stream(&self, token: &str) -> EventReader {
        let cookie = format!("sse_token={token}");
        EventReader::new(self.get("/admin/events", Some(&cookie), None).await)
    }
}

/// The next `snapshot` event's data, parsed, and its raw data.
async fn next_snapshot(reader: &mut EventReader) -> (Value, String) {
    let event = reader.next().await.expect("the admin stream goes on");
    assert_eq!(event.event_type, "snapshot");
    assert_eq!(event.last_event_id, "", "snapshots carry no id");
    (serde_json::from_str(&event.data).unwrap(), event.data)
}

/// Reads snapshots until one satisfies `done`; the reader's guard bounds the wait.
async fn snapshot_where(reader: &mut EventReader, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let (snapshot, _) = next_snapshot(reader).await;
        if done(&snapshot) {
            return snapshot;
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

/// The security headers every admin answer carries, refusals included.
fn assert_hardened(headers: &HeaderMap) {
    assert_eq!(header(headers, "cache-control"), "no-store");
    assert_eq!(header(headers, "x-frame-options"), "DENY");
    let csp = header(headers, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test]
async fn admin_page_and_stream_are_refused_without_a_token_and_to_a_non_admin() {
    let server = Server::start().await;
    let user = user_token();
    let user_cookie = format!("sse_token={user}");
    for path in ["/admin", "/admin/events"] {
        let response = server.get(path, None, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(header(response.headers(), "www-authenticate"), "Bearer");
        assert_hardened(response.headers());

        let response = server.get(path, None, Some(&user)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert_hardened(response.headers());
        let response = server.get(path, Some(&user_cookie), None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");

        let forged = format!("{}x", admin_token());
        let response = server.get(path, None, Some(&forged)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(header(response.headers(), "www-authenticate").contains("invalid_token"));
    }

    // A non-admin token in the query: refused, and no cookie is set.
    let response = server
        .get(&format!("/admin?authorization={user}"), None, None)
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none());
    assert_hardened(response.headers());

    // Junk in the query is refused, never a panic nor a cookie.
    for junk in [
        "%FF%FE",
        "a%00b",
        "x;%20Path=/evil",
        "%",
        "Bearer%20",
        "a\u{ff}b",
    ] {
        let response = server
            .get(&format!("/admin?authorization={junk}"), None, None)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{junk:?}");
        assert!(response.headers().get("set-cookie").is_none(), "{junk:?}");
    }
}

#[tokio::test]
async fn a_query_token_moves_into_an_http_only_strict_cookie_which_then_serves_the_page() {
    let server = Server::start().await;
    let admin = admin_token();

    // Even with a stale cookie in the browser (a server restarted with a new secret), the
    // fresh URL works, and replaces it.
    let stale = "sse_token=eyJhbGciOiJIUzI1NiJ9.e30.c3RhbGU";
    let response = server
        .get(&format!("/admin?authorization={admin}"), Some(stale), None)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(response.headers(), "location"), "/admin");
    assert_hardened(response.headers());
    let set_cookie = header(response.headers(), "set-cookie").to_owned();
    let attributes: Vec<&str> = set_cookie.split("; ").collect();
    assert_eq!(attributes[0], format!("sse_token={admin}"));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(attributes.contains(&attribute), "{set_cookie}");
    }
    let max_age: u64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("a Max-Age")
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&max_age), "{set_cookie}");
    assert!(!attributes.contains(&"Secure"), "plain HTTP: not Secure");
    assert!(response.text().await.unwrap().is_empty());

    // The cookie then serves the page, with its script and style from the same origin.
    let cookie = format!("sse_token={admin}");
    let response = server.get("/admin", Some(&cookie), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_hardened(response.headers());
    assert_eq!(
        header(response.headers(), "content-type"),
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<script src="/admin/admin.js" defer></script>"#));
    assert!(!page.contains("<script>"), "no inline script");
    assert!(!page.contains("style="), "no inline style");

    for (path, content_type) in [
        ("/admin/admin.js", "text/javascript; charset=utf-8"),
        ("/admin/admin.css", "text/css; charset=utf-8"),
    ] {
        let response = server.get(path, Some(&cookie), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(response.headers(), "content-type"), content_type);
        assert_eq!(
            header(response.headers(), "x-content-type-options"),
            "nosniff"
        );
    }
    let script = server.get("/admin/admin.js", None, None).await;
    let script = script.text().await.unwrap();
    assert!(script.contains(r#"new EventSource("/admin/events")"#));
    assert!(!script.contains("innerHTML"), "text goes in as text only");

    // Behind a proxy that says the client used HTTPS, the cookie is Secure too.
    let response = server
        .client
        .get(server.url(&format!("/admin?authorization=Bearer%20{admin}")))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = header(response.headers(), "set-cookie");
    assert!(set_cookie.starts_with(&format!("sse_token={admin};")));
    assert!(set_cookie.ends_with("; Secure"), "{set_cookie}");
}

#[tokio::test]
async fn the_first_snapshot_lists_subscribers_and_topics_and_escapes_what_clients_sent() {
    let server = Server::start().await;
    for n in 0..3 {
        server.publish("news", &format!("story {n}")).await;
    }
    server.activity.record_publish(HOSTILE_TOPIC);
    let subscriber = server.subscriber("news", HOSTILE_LABEL).await;

    let mut reader = server.admin_stream(&admin_token()).await;
    let (snapshot, raw) = next_snapshot(&mut reader).await;

    // The subscriber, as the registry sees it.
    let connections = snapshot["connections"].as_array().unwrap();
    let news: Vec<&Value> = connections
        .iter()
        .filter(|c| c["topic"] == "news")
        .collect();
    assert_eq!(news.len(), 1, "{snapshot:#}");
    let news = news[0];
    assert_eq!(news["label"], HOSTILE_LABEL);
    assert_eq!(news["path"], "/events/news");
    let peer: SocketAddr = news["peer"].as_str().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback());
    for field in ["id", "age", "events_sent", "bytes_sent"] {
        assert!(news[field].is_u64(), "{field}: {news}");
    }
    assert!(news["last_event_id"].is_null());
    // This stream is listed too: the admin's own.
    assert!(connections.iter().any(|c| c["path"] == "/admin/events"));
    assert_eq!(snapshot["connections_total"], 2);

    // The topic, with what it retains and its publishes.
    let topics = snapshot["topics"].as_array().unwrap();
    let topic = topics.iter().find(|t| t["name"] == "news").unwrap();
    assert_eq!(topic["subscribers"], 1);
    assert_eq!(topic["retained_events"], 3);
    assert!(topic["retained_bytes"].as_u64().unwrap() > 0);
    assert_eq!(topic["published"], 3);
    assert!(topic["rate"].as_f64().unwrap() > 0.0);
    assert_eq!(topic["closed"], false);
    assert_eq!(topic["exists"], true);

    // The name no topic can have: listed (escaped), with the hub's refusal, not a failure.
    let hostile = topics.iter().find(|t| t["name"] == HOSTILE_TOPIC).unwrap();
    assert!(hostile["error"].is_string());
    assert_eq!(snapshot["topics_total"], 2);

    // What clients sent is escaped JSON on a single data line: no raw quote, newline or
    // forged field got through.
    assert!(raw.contains(r#"<img src=x onerror=alert(1)>\"'\\\n\rdata: forged"#));
    assert!(raw.contains(r#"</script><b onclick=\"x\">\n"#));
    assert!(!raw.contains('\n') && !raw.contains('\r'));
    let stream = String::from_utf8_lossy(reader.raw()).into_owned();
    assert!(!stream.contains("\ndata: forged"), "{stream}");

    // Disconnects and backend health.
    let disconnects = &snapshot["disconnects"];
    for reason in [
        "open",
        "opened",
        "refused",
        "ended",
        "client_gone",
        "closed",
        "shutdown",
        "max_lifetime",
        "stalled",
        "slow_consumers",
    ] {
        assert!(disconnects[reason].is_u64(), "{reason}: {disconnects}");
    }
    assert_eq!(disconnects["open"], 2);
    assert_eq!(snapshot["backend"], serde_json::json!({ "status": "ok" }));
    assert_eq!(snapshot["published"], 3);

    // Live: later publishes show in a later snapshot, and a subscriber that leaves is counted
    // as gone.
    server.publish("news", "story 3").await;
    snapshot_where(&mut reader, |s| {
        s["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "news" && t["retained_events"] == 4 && t["published"] == 4)
    })
    .await;
    drop(subscriber);
    let snapshot = snapshot_where(&mut reader, |s| {
        s["disconnects"]["client_gone"] == 1
            && s["topics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "news" && t["subscribers"] == 0)
    })
    .await;
    assert!(
        !snapshot["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["topic"] == "news")
    );
}

#[tokio::test]
async fn the_admin_stream_ends_when_the_admin_token_expires() {
    let server = Server::start().await;
    // Expires within two seconds (exp is in whole seconds); no leeway.
    let exp = SystemTime::now() + Duration::from_secs(2);
    let short = token(Claims::new().admin(true).expires_at(exp));
    let mut reader = server.admin_stream(&short).await;
    next_snapshot(&mut reader).await;

    // Reading to the end is the synchronisation: the server ends the stream at the expiry.
    for event in reader.until_end().await {
        assert_eq!(event.event_type, "snapshot");
    }
    assert_eq!(reader.retry(), Some(1000));
    let raw = String::from_utf8_lossy(reader.raw());
    assert!(
        raw.ends_with("retry: 1000\n: authorization expired\n\n"),
        "{raw:?}"
    );
    assert!(SystemTime::now() + Duration::from_secs(1) >= exp);

    // Coming back with it is refused.
    let cookie = format!("sse_token={short}");
    let response = server.get("/admin/events", Some(&cookie), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
