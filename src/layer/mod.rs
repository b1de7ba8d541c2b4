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
//! With the `compression` feature, [`SseLayer::compression`] compresses event streams too, one
//! context per stream, flushed after every event. A stream that arrives already compressed
//! (`Content-Encoding` set inside the layer) is never written into: it passes untouched, still
//! registered, limited and ended at shutdown.
//!
//! Every other response passes through untouched, byte for byte.
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
mod cors;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod proxy;
mod service;
mod signal;

pub use body::SseBody;
#[cfg(feature = "compression")]
pub use compression::Compression;
pub use cors::InvalidOrigin;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_KEEP_ALIVE, DEFAULT_WRITE_TIMEOUT, SseLayer};
pub use proxy::{ClientAddr, InvalidProxy};
pub use service::SseService;
pub use signal::shutdown_signal;

pub(crate) use future::CACHE_CONTROL;

#[cfg(test)]
mod compression_tests;
#[cfg(test)]
mod ending_tests;
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
