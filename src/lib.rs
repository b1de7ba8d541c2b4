//! Production-grade Server-Sent Events for axum and any tower service.
//!
//! Pushing live data to browsers with `text/event-stream` takes one long `GET`. What it also
//! takes, and what every team writes again by hand, is everything around that response:
//! keep-alive comments that survive proxies, anti-buffering headers, CORS with cookies, reading
//! `Last-Event-ID`, and an encoder that gets the wire format exactly right. `tower-sse` is that
//! part:
//!
//! - [`Event`]: validated, WHATWG-exact, encoded once into shared bytes.
//! - [`SseLayer`]: a tower layer that adds headers, keep-alive, a `retry:` hint and CORS with
//!   credentials to every event-stream response, whoever produced it; registers each stream
//!   ([`registry`]), enforces connection limits and ends every stream at shutdown
//!   ([`SseLayer::shutdown_on`], [`shutdown_signal`]).
//! - [`LastEventId`]: an axum extractor for the id a reconnecting client last saw.
//! - [`EventStream`] / [`TryEventStream`]: return a `Stream` of events from a handler.
//! - [`Hub`]: topics, bounded history, exact replay after `Last-Event-ID` with an in-band `gap`
//!   event when it cannot be exact, live fan-out with slow-consumer protection, on the
//!   in-memory [`backend`] or (feature `redis`) Redis Streams shared by several servers.
//! - [`auth`]: who may publish and subscribe to which topic, a policy the hub consults on
//!   publish and subscribe (replay included); with feature `jwt`, one on JSON Web Tokens.
//!   Read [private topics](auth#private-topics) before a client names a topic.
//! - `metrics` (feature `metrics`): connections, disconnects by reason, events, replays and
//!   gaps, topics and backend errors through the `metrics` facade, beside Mercure's and
//!   Centrifugo's names; `tracing` spans for publish, subscribe, replay and each stream.
//! - `poll` (feature `poll`): stream any JSON API; a poller shared by all the subscribers of a
//!   source sends a `snapshot`, then JSON Patch diffs.
//! - `testing` (feature `testing`): a WHATWG-exact event-stream parser and helpers that read
//!   a response as events and reconnect to a router with `Last-Event-ID`, for your own tests.
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use futures_util::stream::{self, Stream, StreamExt};
//! use tower_sse::{Event, EventStream, LastEventId, SseLayer};
//!
//! /// Numbered ticks, resuming after the last one the client saw.
//! async fn ticks(last: Option<LastEventId>) -> EventStream<impl Stream<Item = Event>> {
//!     let start = last
//!         .and_then(|id| id.as_str()?.parse::<u64>().ok())
//!         .map_or(0, |n| n + 1);
//!     EventStream::new(stream::iter(start..).then(|n| async move {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Event::builder().id(n.to_string()).data(format!("tick {n}")).build().unwrap()
//!     }))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = Router::new()
//!         .route("/events", get(ticks))
//!         .layer(SseLayer::new().allow_origins(["https://app.example.com"]));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await
//! }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `axum`  | yes     | [`LastEventId`], [`Connection`] and [`auth::Identity`] as axum extractors; `IntoResponse` for [`EventStream`], [`TryEventStream`], [`Subscription`] and [`HubError`] |
//! | `signal` | yes    | `shutdown_signal()`: resolves on Ctrl-C (SIGINT) or SIGTERM, for [`SseLayer::shutdown_on`] (through `tokio/signal`) |
//! | `json`  | no      | `Event::json` and `EventBuilder::json_data`, through serde; `Serialize` for `ConnectionInfo` |
//! | `redis` | no      | `backend::RedisBackend` and `HubBuilder::redis`: history and fan-out in Redis Streams |
//! | `compression` | no | [`SseLayer::compression`]: the layer compresses event streams (Brotli, gzip, zstd), each event once for all the streams that send it, or one context per stream, flushed after every event |
//! | `serve` | no      | `serve()`: HTTP/1 and HTTP/2 serving with header and idle timeouts, a send buffer cap, peer addresses and a shutdown deadline |
//! | `jwt`   | no      | `auth::jwt::Jwt`: an authorization policy on JSON Web Tokens (HS256, RS256, ES256) with topic selectors in the claims |
//! | `metrics` | no    | `tower_sse::metrics`: connections, disconnects by reason, events published and sent, replays and gaps, topics, backend errors and lag, through the `metrics` facade (the application installs the exporter) |
//! | `testing` | no    | `tower_sse::testing`: a WHATWG-exact parser, an event reader for any response body and `get_events` to drive a router with `Last-Event-ID`, for tests |
//! | `poll`  | no      | `tower_sse::poll`: stream any JSON API (a plain-HTTP URL or an async function) as a `snapshot` then JSON Patch `patch` events, one shared poller per source |
//!
//! Without `axum`, the layer works on any `tower::Service<http::Request<B>>` whose responses
//! are `http::Response<B2>`, and [`EventStream`] is an [`http_body::Body`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod backend;
pub mod event;
pub mod extract;
pub mod hub;
pub mod layer;
#[cfg(feature = "metrics")]
pub mod metrics;
// Without the feature: the same recording calls, doing nothing.
#[cfg(not(feature = "metrics"))]
#[path = "metrics/off.rs"]
mod metrics;
#[cfg(feature = "poll")]
pub mod poll;
pub mod registry;
pub mod response;
pub mod serve;
#[cfg(feature = "testing")]
pub mod testing;

// What the README and the examples use, at the root; every item stays at its module path too.
pub use backend::GapResume;
pub use event::{Event, EventBuilder, EventError};
pub use extract::{InvalidLastEventId, LastEventId};
pub use hub::{
    Hub, HubBuilder, HubError, HubStats, Publish, Published, StreamOptions, Subscription,
};
#[cfg(feature = "compression")]
pub use layer::Compression;
#[cfg(feature = "signal")]
pub use layer::shutdown_signal;
pub use layer::{SseLayer, SseService};
pub use registry::{Connection, ConnectionInfo, Registry};
pub use response::{EventStream, TryEventStream};
#[cfg(feature = "serve")]
pub use serve::serve;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
