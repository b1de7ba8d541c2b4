//! The hub server of `examples/hub.rs`, in process on `127.0.0.1:0`, with a client for it: the
//! one harness of the end-to-end suites (hub, Redis, HTTP/2, nginx).

use std::net::SocketAddr;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client::{EventReader, GUARD, get_json};

/// The example itself, so the tests run exactly the code users run.
#[path = "../../examples/hub.rs"]
pub mod hub_server;

pub use hub_server::{App, Config};

/// The default configuration, listening on a free port, without the per-peer cap: every
/// client of these tests connects from 127.0.0.1 (`tests/proxies.rs` tests the cap).
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".to_owned(),
        max_connections_per_peer: None,
        ..Config::default()
    }
}

/// A running hub server.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: tower_sse::Hub,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The example's hub server with `config`.
    pub async fn start(config: Config) -> Server {
        Server::start_with_client(config, reqwest::Client::new()).await
    }

    /// The same, talked to with `client` (e.g. one that speaks HTTP/2 only).
    pub async fn start_with_client(config: Config, client: reqwest::Client) -> Server {
        Server::serve_with_client(hub_server::app(&config).await.unwrap(), client).await
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
        app: App,
        client: reqwest::Client,
    ) -> Server {
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

    /// `POST path` with `body`.
    pub async fn publish_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
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

    /// Publishes `data` and returns the id the hub gave it.
    pub async fn publish(&self, topic: &str, data: &str) -> String {
        match self.try_publish(topic, data).await {
            Ok(id) => id,
            Err((status, body)) => panic!("publish answered {status}: {body}"),
        }
    }

    /// `GET /connections`.
    pub async fn connections(&self) -> Vec<Value> {
        let body = get_json(&self.client, &self.url("/connections")).await;
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
