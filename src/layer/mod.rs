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
//!   `403 Forbidden` instead of the stream.
//!
//! Every other response passes through untouched, byte for byte.
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
mod cors;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;
mod signal;

pub use body::SseBody;
pub use cors::InvalidOrigin;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_KEEP_ALIVE, SseLayer};
pub use service::SseService;
pub use signal::shutdown_signal;

pub(crate) use future::CACHE_CONTROL;

#[cfg(test)]
pub(crate) mod tests;
