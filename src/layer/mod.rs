//! [`SseLayer`]: everything an event stream needs around it, for any handler that produces one.
//!
//! The layer looks at each response. One whose `Content-Type` is `text/event-stream` —
//! produced by this crate's [`EventStream`](crate::EventStream), by axum's own
//! `axum::response::Sse`, or by hand — gets:
//!
//! - `Cache-Control: no-cache, no-transform` (unless the handler set its own),
//!   `X-Accel-Buffering: no` so nginx does not buffer it, no `Content-Length`, and never a
//!   `Connection` header on HTTP/2;
//! - a first frame with a one-line comment, so proxies pass the headers on at once, and the
//!   `retry:` hint if one is configured (plus 2 KiB of padding for old polyfills, if asked);
//! - a keep-alive comment after each idle interval (15 s by default), reset by every write and
//!   only ever placed between two complete events, even when the handler's body delivers an
//!   event in several frames;
//! - CORS with credentials for the origins you list: the origin echoed with
//!   `Access-Control-Allow-Credentials: true` and `Vary: Origin`, preflights for
//!   `Last-Event-ID` answered; an unlisted or `null` origin gets no CORS headers and a
//!   `403 Forbidden` instead of the stream;
//! - an entry in the [`Registry`](crate::registry::Registry), the connection limits, an
//!   optional [maximum lifetime](SseLayer::max_lifetime), and an end with a jittered `retry:`
//!   hint at [shutdown](SseLayer::shutdown), after an optional
//!   [grace period](SseLayer::shutdown_grace);
//! - an end, with its slot freed, when its client has accepted nothing for the
//!   [write timeout](SseLayer::write_timeout) (30 s by default) while the stream had
//!   something to send;
//! - behind [trusted proxies](SseLayer::trusted_proxies), the client's address from
//!   `Forwarded` or `X-Forwarded-For` ([`ClientAddr`]) for the registry and the per-peer
//!   limits.
//!
//! With the `compression` feature, [`SseLayer::compression`] compresses event streams too, each
//! event once for all the streams that send it (or in one context per stream), flushed after
//! every event. A stream that arrives already compressed
//! (`Content-Encoding` set inside the layer) is never written into: it passes untouched, still
//! registered, limited and ended at shutdown.
//!
//! Every other response passes through untouched, byte for byte.
//!
//! Before the handler runs, every request (not only those for streams) is checked: one with an
//! unsafe method from a page of another origin is refused, and so, with
//! [`allow_hosts`](SseLayer::allow_hosts), is one for a host the server does not serve; see
//! [Cross-site requests and DNS rebinding](#cross-site-requests-and-dns-rebinding).
//!
//! # Streams that answer a `POST`
//!
//! A stream does not have to answer a `GET` from `EventSource`: the layer treats any response
//! that is an event stream the same, whatever the method and the `Accept` header (`fetch`
//! sends `*/*`). The [`LastEventId`](crate::LastEventId) extractor reads the header a `fetch`
//! client sets by hand, and the connection limits count these streams too. For pages on other
//! origins, allow the method and the JSON body's content type, so that the preflight succeeds:
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use futures_util::stream;
//! use http::{Method, header};
//! use tower_sse::{Event, EventStream, LastEventId, SseLayer};
//!
//! #[derive(serde::Deserialize)]
//! struct Prompt { prompt: String }
//!
//! async fn answer(
//!     last: Option<LastEventId>,
//!     Json(prompt): Json<Prompt>,
//! ) -> EventStream<impl futures_util::Stream<Item = Event>> {
//!     let _ = (last, prompt.prompt);
//!     EventStream::new(stream::iter([Event::data("Hello")]))
//! }
//!
//! // fetch("https://api.example.com/answer", { method: "POST", credentials: "include",
//! //   headers: { "content-type": "application/json", "last-event-id": "7" }, body })
//! let app: Router = Router::new().route("/answer", post(answer)).layer(
//!     SseLayer::new()
//!         .allow_origins(["https://app.example.com"])
//!         .allow_methods([Method::POST])
//!         .allow_headers([header::CONTENT_TYPE]),
//! );
//! # let _ = app;
//! ```
//!
//! # Cross-site requests and DNS rebinding
//!
//! Two attacks reach a server through its users' browsers. The layer stops both before the
//! handler runs, keeping nothing and reading no request body.
//!
//! **Cross-site writes.** Any web page can make its visitors' browsers send a `POST` anywhere: a
//! form, or `fetch` with a `text/plain` body, is a "simple" request that needs no preflight. It
//! carries the visitors' cookies, and it reaches servers on their `localhost` or private
//! network. CORS only keeps the page from reading the answer: the handler has run. So a request
//! whose method is not `GET`, `HEAD` or `OPTIONS` and that a browser sent from a page of another
//! origin is answered `403 Forbidden`, unless that origin is
//! [allowed](SseLayer::allow_origins). The check is Go's `net/http.CrossOriginProtection`:
//! `Sec-Fetch-Site` (sent by every browser since 2023) says where the request comes from, and
//! only `same-origin` and `none` (the user) pass without an allowed origin; for browsers that do
//! not send it, an `Origin` must be the server's own or an allowed one (`null` never is).
//! Requests with neither header, from `curl` or servers, pass. Handlers must therefore not change
//! anything on `GET`. [`no_cross_origin_protection`](SseLayer::no_cross_origin_protection)
//! switches it off.
//!
//! **Same origin** means the same scheme, host and port (a missing port is the scheme's default
//! one). The host and port are the request's (`Host`, or HTTP/2's `:authority`); the scheme is
//! what [trusted proxies](SseLayer::trusted_proxies) forward (`Forwarded: proto=`,
//! `X-Forwarded-Proto`), else the [public scheme](SseLayer::public_scheme) if set, else the
//! request target's (HTTP/2 has one), else `http`: the layer cannot see TLS. The same check
//! decides which event streams with an `Origin` need an allowed origin.
//!
//! **DNS rebinding.** A page on a name its author controls, `evil.example`, points that name at
//! the server's address (`127.0.0.1`, or one of a private network) once loaded. The browser then
//! sends the page's requests to the server with `Host` and `Origin` both naming `evil.example`,
//! and holds them same-origin: the page reads streams and publishes, whatever the server checks
//! about origins. Only `Host`, which no page can set, tells. [`allow_hosts`](SseLayer::allow_hosts)
//! lists the names the server is reached by and answers every other one
//! `421 Misdirected Request`. Without it (the default, for a layer behind a proxy that routes by
//! host) every host is served: a server that browsers reach directly, above all on `localhost`
//! or a private network, should list its names.
//!
//! ```
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt as _;
//! use tower_sse::SseLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app: Router = Router::new()
//!     .route("/publish", post(|| async { "published" }))
//!     .layer(
//!         SseLayer::new()
//!             .allow_hosts(["push.example.com", "localhost:8080"])
//!             // Pages on this origin may read streams and publish.
//!             .allow_origins(["https://app.example.com"]),
//!     );
//!
//! let publish = |host: &str, origin: &str| {
//!     Request::post("/publish")
//!         .header("host", host)
//!         .header("origin", origin)
//!         .header("content-type", "text/plain")
//!         .body(Body::from("hello"))
//!         .unwrap()
//! };
//! // A page on another site.
//! let response = app.clone().oneshot(publish("push.example.com", "https://evil.example")).await;
//! assert_eq!(response.unwrap().status(), StatusCode::FORBIDDEN);
//! // A page on a name rebound to the server's address.
//! let response = app.clone().oneshot(publish("evil.example", "http://evil.example")).await;
//! assert_eq!(response.unwrap().status(), StatusCode::MISDIRECTED_REQUEST);
//! // The allowed page.
//! let response = app.oneshot(publish("push.example.com", "https://app.example.com")).await;
//! assert_eq!(response.unwrap().status(), StatusCode::OK);
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use futures_util::stream;
//! use tower_sse::{Event, EventStream, SseLayer};
//!
//! async fn events() -> EventStream<impl futures_util::Stream<Item = Event>> {
//!     EventStream::new(stream::iter([Event::data("hello"), Event::data("world")]))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/events", get(events))
//!     .layer(
//!         SseLayer::new()
//!             .keep_alive(Duration::from_secs(10))
//!             .retry(Duration::from_secs(2))
//!             .allow_origins(["https://app.example.com"]),
//!     );
//! # let _ = app;
//! ```

mod body;
mod compression;
mod config;
mod cors;
mod future;
mod host;
#[allow(clippy::module_inception)]
mod layer;
mod origin;
mod proxy;
mod service;
#[cfg(feature = "signal")]
mod signal;

pub use body::SseBody;
#[cfg(feature = "compression")]
pub use compression::Compression;
pub use cors::InvalidOrigin;
pub use future::ResponseFuture;
pub use host::InvalidHost;
pub use layer::{DEFAULT_KEEP_ALIVE, DEFAULT_WRITE_TIMEOUT, SseLayer};
pub use proxy::{ClientAddr, InvalidProxy};
pub use service::SseService;
#[cfg(feature = "signal")]
pub use signal::shutdown_signal;

pub(crate) use future::CACHE_CONTROL;
#[cfg(feature = "serve")]
pub(crate) use future::is_event_stream;

#[cfg(test)]
mod compression_tests;
#[cfg(test)]
mod cors_tests;
#[cfg(test)]
mod ending_tests;
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod origin_tests;
#[cfg(test)]
mod post_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod stall_tests;
#[cfg(test)]
pub(crate) mod tests;
