//! Helpers for testing your own event-stream handlers (feature `testing`).
//!
//! Add the feature for your tests only:
//!
//! ```toml
//! [dev-dependencies]
//! tower-sse = { version = "0.1", features = ["testing"] }
//! ```
//!
//! - [`Parser`]: the WHATWG parsing algorithm, incremental: what a browser's `EventSource`
//!   fires for a stream's bytes, fed in chunks split anywhere. [`parse`] for a whole stream.
//! - [`EventReader`]: any response body (axum's `Body`, an [`EventStream`](crate::EventStream))
//!   read as [`ParsedEvent`]s: the next one, the next `n`, or all of them until the end.
//! - [`get_events`] (with the `axum` feature): an `EventSource`'s request sent to a router
//!   without a server, with the `Last-Event-ID` of a reconnect, answered by a response whose
//!   body is an [`EventReader`].
//!
//! Nothing here waits on a timer: an open stream that has nothing to send makes a read wait
//! for good. Wrap reads that might in `tokio::time::timeout` (they are cancel-safe).
//!
//! # Example
//!
//! A hub behind a router: a first connection gets live events; a reconnect with the last id
//! it saw gets what it missed.
//!
//! ```
//! use axum::Router;
//! use axum::extract::{Path, State};
//! use axum::routing::get;
//! use tower_sse::testing::{ParsedEvent, get_events};
//! use tower_sse::{Event, Hub, HubError, LastEventId, SseLayer, Subscription};
//!
//! async fn subscribe(
//!     State(hub): State<Hub>,
//!     Path(topic): Path<String>,
//!     last: Option<LastEventId>,
//! ) -> Result<Subscription, HubError> {
//!     hub.subscribe(&topic, last).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::memory();
//! let mut app = Router::new()
//!     .route("/events/{topic}", get(subscribe))
//!     .layer(SseLayer::new())
//!     .with_state(hub.clone());
//!
//! // A first connection: live events only.
//! let mut response = get_events(&mut app, "/events/news").send().await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["content-type"], "text/event-stream");
//! hub.publish("news", Event::data("one")).await?;
//! let events = response.body_mut().take(1).await?;
//! assert_eq!(events[0].data, "one");
//!
//! // The client goes away and misses two events...
//! let last_seen = response.body().last_event_id().to_owned();
//! drop(response);
//! hub.publish("news", Event::data("two")).await?;
//! hub.publish("news", Event::builder().event("price").data("1.08").build()?).await?;
//!
//! // ...and reconnects with the last id it saw: they are replayed, in order.
//! let mut again = get_events(&mut app, "/events/news")
//!     .last_event_id(&last_seen)
//!     .send()
//!     .await?;
//! let missed = again.body_mut().take(2).await?;
//! assert_eq!(missed[0].data, "two");
//! assert_eq!(missed[1].event_type, "price");
//! assert_eq!(
//!     missed[1],
//!     ParsedEvent::new("price", "1.08", again.body().last_event_id())
//! );
//! # Ok(())
//! # }
//! ```

mod parser;
mod reader;
#[cfg(feature = "axum")]
mod request;

pub use parser::{Item, ParsedEvent, Parser, parse};
pub use reader::EventReader;
#[cfg(feature = "axum")]
pub use request::{GetEvents, get_events};

#[cfg(test)]
mod tests;
