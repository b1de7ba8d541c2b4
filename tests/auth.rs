//! Authorization over real sockets: a hub whose policy is `auth::jwt::Jwt`, served by axum on
//! `127.0.0.1:0`, driven by a real HTTP client (reqwest) and read with the WHATWG parser.

#[allow(dead_code)]
mod support {
    pub mod client;
    pub mod whatwg;
}

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use reqwest::StatusCode;
use support::client::EventReader;
use tokio::task::JoinHandle;
use tower_sse::auth::jwt::{Claims, Jwt};
use tower_sse::auth::{Action, Identity};
use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};

const SECRET: &[u8] = b"tests/auth.rs: a 32-byte or longer secret";

/// The `retry:` hint the hub sends when it ends a stream itself.
const RETRY: Duration = Duration::from_millis(700);

async fn subscribe(
    State(hub): State<Hub>,
    who: Identity,
    Path(topic): Path<String>,
    last: Option<LastEventId>,
) -> Result<Subscription, HubError> {
    hub.subscribe_as(&who, &topic, last).await
}

async fn publish(
    State(hub): State<Hub>,
    who: Identity,
    Path(topic): Path<String>,
    body: String,
) -> Result<String, HubError> {
    let published = hub.publish_as(&who, &topic, Event::data(body)).await?;
    Ok(published.id().to_owned())
}

async fn admin(State(hub): State<Hub>, who: Identity) -> Result<String, HubError> {
    hub.authorize(&who, Action::Admin, "*")?;
    Ok(format!("{} open", hub.registry().len()))
}

/// The policy of these tests: HS256, no leeway (so expiry is exact), `public/*` open.
fn policy() -> Jwt {
    Jwt::hs256(SECRET)
        .unwrap()
        .leeway(Duration::ZERO)
        .public_topics(["public/*"])
}

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let hub = Hub::builder()
            .retry_after_lag(RETRY)
            .policy(policy())
            .memory();
        let app = Router::new()
            .route("/events/{*topic}", get(subscribe))
            .route("/publish/{*topic}", post(publish))
            .route("/admin", get(admin))
            .layer(SseLayer::new().registry(hub.registry()))
            .with_state(hub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            addr,
            client: reqwest::Client::new(),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /publish/{topic}` with `token` as a Bearer header, if any.
    async fn publish(&self, token: Option<&str>, topic: &str, data: &str) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/publish/{topic}")))
            .body(data.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Publishes with a token that may publish anywhere; the event's id.
    async fn publish_ok(&self, topic: &str, data: &str) -> String {
        let response = self.publish(Some(&publisher()), topic, data).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// `GET /events/{topic}`, `last` as `Last-Event-ID`, `token` as the cookie `sse_token`.
    async fn events(
        &self,
        topic: &str,
        last: Option<&str>,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .get(self.url(&format!("/events/{topic}")))
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        if let Some(token) = token {
            request = request.header("cookie", format!("sse_token={token}"));
        }
        request.send().await.unwrap()
    }
}

fn token(claims: Claims) -> String {
    policy().sign(&claims).unwrap()
}

fn in_an_hour() -> Claims {
    Claims::new().expires_in(Duration::from_secs(3600))
}

fn publisher() -> String {
    token(in_an_hour().publish(["*"]))
}

/// The `WWW-Authenticate` header and the body of a refusal.
async fn refusal(response: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, challenge, response.text().await.unwrap())
}

#[tokio::test]
async fn anonymous_publish_is_refused_with_401() {
    let server = Server::start().await;
    let (status, challenge, body) = refusal(server.publish(None, "public/news", "x").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    assert_eq!(body, "publishing needs a token\n");

    // Nothing reached a subscriber: the first event anyone publishes is the first one there.
    let id = server.publish_ok("public/news", "first").await;
    let mut reader = EventReader::new(server.events("public/news", Some("0"), None).await);
    let event = reader.next().await.unwrap();
    // The id `0` is foreign: a gap notice, then everything retained, which is the one event.
    assert_eq!(event.event_type, "gap");
    let event = reader.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("first", id.as_str())
    );
}

#[tokio::test]
async fn publish_with_a_token_lacking_the_topic_is_403() {
    let server = Server::start().await;
    let narrow = token(in_an_hour().publish(["room/1"]).subscribe(["*"]));
    let (status, challenge, body) =
        refusal(server.publish(Some(&narrow), "room/2", "x").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(challenge, None);
    assert_eq!(
        body,
        "no publish selector of the token matches topic \"room/2\"\n"
    );
    // A token to subscribe everywhere is no token to publish.
    let reader = token(in_an_hour().subscribe(["*"]));
    assert_eq!(
        server.publish(Some(&reader), "room/1", "x").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.publish(Some(&narrow), "room/1", "x").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_private_topic_is_refused_without_a_token_and_served_with_one_on_replay_too() {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(server.publish_ok("user/ann", &format!("secret {n}")).await);
    }

    // A reconnect (Last-Event-ID) is no way around the policy.
    for last in [None, Some(ids[0].as_str())] {
        let (status, challenge, body) = refusal(server.events("user/ann", last, None).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{last:?}");
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        assert_eq!(
            body,
            "topic \"user/ann\" is private: subscribing needs a token\n"
        );

        let bob = token(in_an_hour().subscribe(["user/bob"]));
        let response = server.events("user/ann", last, Some(&bob)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!response.text().await.unwrap().contains("secret"));
    }

    // With a token, by cookie: exactly what follows the client's id.
    let ann = token(in_an_hour().subscribe(["user/ann"]));
    let mut reader = EventReader::new(server.events("user/ann", Some(&ids[0]), Some(&ann)).await);
    let replay = reader.take(2).await;
    assert_eq!(
        replay
            .iter()
            .map(|event| (event.data.as_str(), event.last_event_id.as_str()))
            .collect::<Vec<_>>(),
        [("secret 2", ids[1].as_str()), ("secret 3", ids[2].as_str())]
    );

    // By header, and by query parameter (the last resort), the same.
    let response = server
        .client
        .get(server.url("/events/user/ann"))
        .bearer_auth(&ann)
        .header("last-event-id", &ids[1])
        .send()
        .await
        .unwrap();
    assert_eq!(
        EventReader::new(response).next().await.unwrap().data,
        "secret 3"
    );
    let response = server
        .client
        .get(server.url(&format!(
            "/events/user/ann?lastEventId={}&authorization={ann}",
            ids[1]
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        EventReader::new(response).next().await.unwrap().data,
        "secret 3"
    );

    // Public topics need no token.
    assert_eq!(
        server.events("public/news", None, None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn subscribe_selectors_exact_prefix_and_star() {
    let server = Server::start().await;
    let cases: [(&str, &[(&str, StatusCode)]); 3] = [
        (
            "room/1",
            &[
                ("room/1", StatusCode::OK),
                ("room/10", StatusCode::FORBIDDEN),
                ("room", StatusCode::FORBIDDEN),
            ],
        ),
        (
            "room/*",
            &[
                ("room/1", StatusCode::OK),
                ("room/1/chat", StatusCode::OK),
                ("rooms/1", StatusCode::FORBIDDEN),
            ],
        ),
        (
            "*",
            &[
                ("room/1", StatusCode::OK),
                ("user/ann", StatusCode::OK),
                ("stream:abc", StatusCode::OK),
            ],
        ),
    ];
    for (selector, topics) in cases {
        let token = token(in_an_hour().subscribe([selector]).publish([selector]));
        for (topic, expected) in topics {
            let response = server.events(topic, None, Some(&token)).await;
            assert_eq!(
                response.status(),
                *expected,
                "subscribe {selector} → {topic}"
            );
            let response = server.publish(Some(&token), topic, "x").await;
            assert_eq!(response.status(), *expected, "publish {selector} → {topic}");
        }
    }
}

#[tokio::test]
async fn expired_and_wrong_key_tokens_are_refused_with_clear_messages() {
    let server = Server::start().await;
    let expired = token(
        Claims::new()
            .subscribe(["*"])
            .publish(["*"])
            .expires_at(SystemTime::now() - Duration::from_secs(60)),
    );
    let other_key = Jwt::hs256(b"another server's secret, also 32 bytes")
        .unwrap()
        .sign(&in_an_hour().subscribe(["*"]).publish(["*"]))
        .unwrap();
    for (token, message) in [
        (expired.as_str(), "the token has expired"),
        (
            other_key.as_str(),
            "the token's signature does not match this server's key",
        ),
        (
            "not-a-jwt",
            "the token is not a well-formed JWT (three base64url parts)",
        ),
    ] {
        let expected = (
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"Bearer error="invalid_token", error_description="{message}""#
            )),
            format!("{message}\n"),
        );
        assert_eq!(
            refusal(server.publish(Some(token), "room/1", "x").await).await,
            expected
        );
        assert_eq!(
            refusal(server.events("room/1", None, Some(token)).await).await,
            expected
        );
        // A bad token is refused even for a public topic: the client should know.
        assert_eq!(
            refusal(server.events("public/news", None, Some(token)).await).await,
            expected
        );
    }
    let huge = "a".repeat(9000);
    let (status, _, body) = refusal(server.publish(Some(&huge), "room/1", "x").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "the token is longer than 8192 bytes\n");
}

#[tokio::test]
async fn admin_needs_an_admin_token() {
    let server = Server::start().await;
    let get_admin = |token: Option<String>| {
        let mut request = server.client.get(server.url("/admin"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        get_admin(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let everything_but = token(in_an_hour().subscribe(["*"]).publish(["*"]));
    assert_eq!(
        get_admin(Some(everything_but)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let admin = token(in_an_hour().admin(true));
    let response = get_admin(Some(admin)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "0 open");
}

#[tokio::test]
async fn token_expiry_ends_an_open_stream_with_a_retry_hint() {
    let server = Server::start().await;
    // Expires within two seconds (exp is in whole seconds); no leeway.
    let exp = SystemTime::now() + Duration::from_secs(2);
    let short = token(Claims::new().subscribe(["room/*"]).expires_at(exp));
    let mut reader = EventReader::new(server.events("room/1", None, Some(&short)).await);
    let id = server.publish_ok("room/1", "while authorized").await;
    let event = reader.next().await.unwrap();
    assert_eq!(event.data, "while authorized");

    // Reading to the end is the synchronisation: the server ends the stream at the expiry.
    let rest = reader.until_end().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(reader.retry(), Some(RETRY.as_millis() as u64));
    let raw = String::from_utf8_lossy(reader.raw());
    assert!(
        raw.ends_with("retry: 700\n: authorization expired\n\n"),
        "{raw:?}"
    );
    assert!(SystemTime::now() + Duration::from_secs(1) >= exp);

    // The client comes back with its last id: the old token no longer opens anything.
    let (status, challenge, _) =
        refusal(server.events("room/1", Some(&id), Some(&short)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("invalid_token"));
    // With a fresh one it resumes exactly.
    let later = server.publish_ok("room/1", "after").await;
    let fresh = token(in_an_hour().subscribe(["room/*"]));
    let mut reader = EventReader::new(server.events("room/1", Some(&id), Some(&fresh)).await);
    let event = reader.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("after", later.as_str())
    );
}
