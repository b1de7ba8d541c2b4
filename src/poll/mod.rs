//! Stream any JSON API (feature `poll`): a shared poller sends a `snapshot`, then JSON Patch
//! diffs.
//!
//! Many front ends poll a JSON API that changes now and then. A [`Poller`] turns such an API
//! into a live stream without touching it: it polls the [`Source`] (a URL, or any async function
//! returning a JSON value), compares each answer with the last, and publishes each change to a
//! [`Hub`](crate::Hub) topic as an RFC 6902 JSON Patch. Every subscriber of a source shares one
//! poller: a hundred browsers cost the API one request per interval, and an unchanged API
//! answers `304 Not Modified`. The events, all with JSON data:
//!
//! - `snapshot`: the whole value. Sent first to a new subscriber (with the id of the newest
//!   event it includes), and in the stream: when the poller starts (with its first value), in
//!   place of a `patch` that would be no smaller than the value (or too large for one event),
//!   and after a publish the hub did not confirm (the patch may or may not have been stored
//!   and sent, so the next value comes whole). A client replaces its state with it, whenever
//!   it comes.
//! - `patch`: the operations from the previous value to the next (`[{"op":"replace",
//!   "path":"/0/gate","value":"B4"}]`); a client applies them in order
//!   (`json_patch::patch` in Rust, a few lines of JavaScript in a page). An empty array
//!   follows an `error` when the source answers again unchanged.
//! - `error`: a poll failed: `{"message":"the upstream answered 503","status":503,
//!   "retry_ms":2000}`, once per run of failures. The message never carries the upstream's
//!   body or address (those go to `tracing`); the poller backs off exponentially (up to
//!   [`PollerBuilder::max_backoff`]) and the streams stay open, so the next change arrives as
//!   usual. In a browser, `source.addEventListener("error", …)` also sees connection errors,
//!   which are plain `Event`s rather than `MessageEvent`s with data.
//!
//! A reconnect with `Last-Event-ID` gets the patches it missed, or a fresh `snapshot` when the
//! hub no longer retains them: the client never has to handle a `gap`. A poller starts with its
//! source's first subscriber and stops [`PollerBuilder::idle_grace`] after the last has gone;
//! polls come every [`Source::interval`], never more often than
//! [`PollerBuilder::min_interval`]. At most [`PollerBuilder::max_sources`] sources are polled
//! at once; a subscriber of one more gets a `retry:` hint. With [`Source::array_key`], arrays
//! of objects with an id field are diffed by key ([`diff`], O(n log n); a large value is
//! diffed on a blocking thread), so one row inserted at the head of a list is one `add` rather
//! than a replacement of every row after it.
//!
//! [`Source::url`] speaks plain HTTP and follows no redirect. Whoever chooses the URL chooses
//! where your server sends requests: never take one from a client without an allowlist
//! (`examples/proxy.rs` has one that parses URLs, so `http://allowed@evil` and the like do not
//! get through). A host *name* is connected to only where it resolves to public addresses,
//! unless [`PollerBuilder::allow_private_names`]: an IP literal, and `localhost`, are
//! connected to as written.
//!
//! # Example
//!
//! A function source, read as a client would:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! use futures_util::StreamExt;
//! use serde_json::{Value, json};
//! use tower_sse::Hub;
//! use tower_sse::poll::{Poller, Source, json_patch};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::memory();
//! let poller = Poller::builder().min_interval(Duration::from_millis(10)).build(hub);
//!
//! // A counter that goes up by one on each poll.
//! let polls = Arc::new(AtomicU64::new(0));
//! let source = Source::from_fn("counter", move || {
//!     let n = polls.fetch_add(1, Ordering::Relaxed);
//!     async move { Ok::<_, std::io::Error>(json!({ "count": n, "unit": "polls of the counter" })) }
//! })
//! .interval(Duration::from_millis(10));
//!
//! let mut events = poller.subscribe(source, None).await?;
//! let mut state = Value::Null;
//! for _ in 0..3 {
//!     let event = events.next().await.unwrap();
//!     let data: Value = serde_json::from_str(&event.data_str().unwrap())?;
//!     match event.name() {
//!         // First, and whenever the value comes whole: it replaces the state.
//!         Some("snapshot") => state = data,
//!         Some("patch") => {
//!             let patch: json_patch::Patch = serde_json::from_value(data)?;
//!             json_patch::patch(&mut state, &patch)?;
//!         }
//!         // `error`: the source failed; the stream goes on.
//!         _ => {}
//!     }
//! }
//! assert_eq!(state, json!({ "count": 2, "unit": "polls of the counter" }));
//! # Ok(()) }
//! ```
//!
//! In an axum app, a route that streams an API of yours:
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, extract::State, routing::get};
//! use tower_sse::poll::{Poller, Source};
//! use tower_sse::{Hub, HubError, LastEventId, SseLayer, Subscription};
//!
//! async fn departures(State(poller): State<Poller>, last: Option<LastEventId>)
//!     -> Result<Subscription, HubError>
//! {
//!     let source = Source::url("http://127.0.0.1:8080/api/departures")
//!         .expect("a constant, valid URL")
//!         .interval(Duration::from_secs(1))
//!         .array_key("id");
//!     poller.subscribe(source, last).await
//! }
//!
//! let hub = Hub::memory();
//! let app: Router = Router::new()
//!     .route("/departures", get(departures))
//!     .layer(SseLayer::new().registry(hub.registry()))
//!     .with_state(Poller::new(hub));
//! # let _ = app;
//! ```

mod diff;
mod http;
mod poller;
mod source;

pub use diff::diff;
/// The JSON Patch crate whose types [`diff`] returns (`json_patch::patch` applies them).
pub use json_patch;
pub use poller::{ERROR, PATCH, Poller, PollerBuilder, SNAPSHOT};
pub use source::{InvalidSource, Source};

#[cfg(test)]
mod diff_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
