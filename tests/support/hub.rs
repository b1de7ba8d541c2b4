//! The hub server of `examples/hub.rs`, in process on `127.0.0.1:0`, with a client for it: the
//! one harness of the end-to-end suites (hub, Redis, HTTP/2, nginx).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_sse::auth::jwt::{Claims, Jwt};
use tower_sse::backend::Health;

use super::client::{EventReader, GUARD, POLL};
use super::redis_server::RedisServer;

/// The example itself, so the tests run exactly the code users run.
#[path = "../../examples/hub.rs"]
pub mod hub_server;

pub use hub_server::{App, Config};

/// The `JWT_SECRET` of the hub servers of the tests (in process, and the binary the tests
/// start).
pub const SECRET: &str = "tests/support/hub.rs: the test hub servers' HS256 secret";

/// The default configuration, listening on a free port, with [`SECRET`], without the
/// per-peer cap: every client of these tests connects from 127.0.0.1 (`tests/proxies.rs`
/// tests the cap).
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".to_owned(),
        jwt_secret: Some(SECRET.into()),
        max_connections_per_peer: None,
        ..Config::default()
    }
}

/// [`config`] on `redis`: the hub servers of a test share their Redis and their key, as servers
/// behind one load balancer do.
pub fn redis_config(redis: &RedisServer) -> Config {
    Config {
        redis_url: Some(redis.url()),
        ..config()
    }
}

/// A token signed with [`SECRET`], valid for an hour unless `claims` say otherwise.
pub fn token(claims: Claims) -> String {
    let claims = match claims.exp() {
        Some(_) => claims,
        None => claims.expires_in(Duration::from_secs(3600)),
    };
    Jwt::hs256(SECRET).unwrap().sign(&claims).unwrap()
}

/// A token that may do everything: publish and subscribe on every topic, and administer.
pub fn publisher_token() -> String {
    token(Claims::new().publish(["*"]).subscribe(["*"]).admin(true))
}

/// `Bearer {token}`, for an `Authorization` header.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A client whose every request carries [`publisher_token`], for requests that do not go
/// through [`Server`]'s helpers (through nginx, to a hub process).
pub fn authorized_client() -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&bearer(&publisher_token())).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The answer to a publish, as a publisher reads it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `id` of a `200`'s JSON body.
    pub id: Option<String>,
    /// Whether it came with `Idempotent-Replayed: true`: the first publish's id, nothing
    /// stored again.
    pub replayed: bool,
    pub retry_after: Option<String>,
    /// The body of any other answer.
    pub body: String,
}

/// A running hub server.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: tower_sse::Hub,
    /// A client that sends no credentials of its own.
    pub client: reqwest::Client,
    /// What [`publish_raw`](Self::publish_raw) and [`connections`](Self::connections) send
    /// as their bearer token: [`publisher_token`].
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The example's hub server with `config`.
    pub async fn start(config: Config) -> Server {
        Server::start_with_client(config, reqwest::Client::new()).await
    }

    /// The same, talked to with `client` (e.g. one that speaks HTTP/2 only).
    pub async fn start_with_client(mut config: Config, client: reqwest::Client) -> Server {
        // Bound first, as the example's `main` does, so that its default allowed hosts name
        // the port listened on.
        let listener = tokio::net::TcpListener::bind(&config.addr).await.unwrap();
        config.addr = listener.local_addr().unwrap().to_string();
        Server::serve_on(listener, hub_server::app(&config).await.unwrap(), client)
    }

    /// Serves an app built by the test (e.g. with settings the example does not read).
    pub async fn serve(app: App) -> Server {
        Server::serve_with_client(app, reqwest::Client::new()).await
    }

    async fn serve_with_client(app: App, client: reqwest::Client) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::serve_on(listener, app, client)
    }

    /// Serves `app` on a listener the test set up (e.g. with a small send buffer, which the
    /// connections it accepts inherit).
    pub fn serve_on(
        listener: tokio::net::TcpListener,
        mut app: App,
        client: reqwest::Client,
    ) -> Server {
        app.http1_fast_path = super::http1_fast_path();
        let addr = listener.local_addr().unwrap();
        let hub = app.hub.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(hub_server::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            hub,
            client,
            token: publisher_token(),
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET /events/{topic}`, with `Last-Event-ID` when `last` is given.
    pub async fn request(&self, topic: &str, last: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(&format!("/events/{topic}")));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        request.send().await.unwrap()
    }

    /// Subscribes to `topic`, resuming after `last` when given.
    pub async fn subscribe(&self, topic: &str, last: Option<&str>) -> EventReader {
        EventReader::new(self.request(topic, last).await)
    }

    /// `POST path` with `body`, with [`token`](Self::token).
    pub async fn publish_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header(AUTHORIZATION, bearer(&self.token))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Publishes `data`: the id on success, the status and body otherwise.
    pub async fn try_publish(&self, topic: &str, data: &str) -> Result<String, (u16, String)> {
        let response = self
            .publish_raw(&format!("/publish/{topic}"), data.to_owned())
            .await;
        let status = response.status().as_u16();
        if status != 200 {
            return Err((status, response.text().await.unwrap()));
        }
        let body: Value = response.json().await.unwrap();
        Ok(body["id"].as_str().unwrap().to_owned())
    }

    /// Publishes `data` with `Idempotency-Key: {key}`, with [`token`](Self::token).
    pub async fn publish_keyed(&self, topic: &str, data: &str, key: &str) -> Answer {
        let response = self
            .client
            .post(self.url(&format!("/publish/{topic}")))
            .header(AUTHORIZATION, bearer(&self.token))
            .header("Idempotency-Key", key)
            .body(data.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            let value = response.headers().get(name)?;
            Some(value.to_str().unwrap().to_owned())
        };
        let replayed = header(hub_server::IDEMPOTENT_REPLAYED).as_deref() == Some("true");
        let retry_after = header("retry-after");
        let body = response.text().await.unwrap();
        let id = (status == 200).then(|| {
            let json: Value = serde_json::from_str(&body).unwrap();
            json["id"].as_str().unwrap().to_owned()
        });
        Answer {
            status,
            id,
            replayed,
            retry_after,
            body,
        }
    }

    /// Publishes `data` and returns the id the hub gave it.
    pub async fn publish(&self, topic: &str, data: &str) -> String {
        match self.try_publish(topic, data).await {
            Ok(id) => id,
            Err((status, body)) => panic!("publish answered {status}: {body}"),
        }
    }

    /// `GET /connections`, with [`token`](Self::token) (an admin token).
    pub async fn connections(&self) -> Vec<Value> {
        let response = self
            .client
            .get(self.url("/connections"))
            .header(AUTHORIZATION, bearer(&self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET /connections");
        let body: Value = response.json().await.unwrap();
        body.as_array().unwrap().clone()
    }

    /// Waits until the registry holds `count` streams, by its presence notices.
    pub async fn until_open(&self, count: usize) {
        let registry = self.hub.registry();
        let mut presence = registry.presence();
        while registry.len() != count {
            tokio::time::timeout(GUARD, presence.next())
                .await
                .expect("a presence notice within the guard time");
        }
    }

    /// Waits until the hub's health is `Ok` (`up`) or `Unavailable` (`!up`), polling it.
    pub async fn until_health(&self, up: bool) -> Health {
        let wanted = |health: &Health| matches!(health, Health::Ok) == up;
        let polled = tokio::time::timeout(GUARD, async {
            loop {
                let health = self.hub.health();
                if wanted(&health) {
                    return health;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        polled.unwrap_or_else(|_| {
            panic!(
                "health is still {:?} after the guard time",
                self.hub.health()
            )
        })
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(GUARD, self.task)
            .await
            .expect("graceful shutdown completes")
            .unwrap()
            .unwrap();
    }
}
