//! Extractors for event-stream handlers.
//!
//! [`LastEventId`] reads what a reconnecting client last saw, from the `Last-Event-ID` header
//! or the `lastEventId` query parameter, length-capped and validated.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use tower_sse::LastEventId;
//!
//! let (parts, ()) = Request::get("/events?lastEventId=7")
//!     .header("last-event-id", "9")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! // The header wins over the query parameter.
//! assert_eq!(LastEventId::from_parts(&parts).unwrap().as_str(), Some("9"));
//! ```

mod last_event_id;

pub use last_event_id::{
    InvalidLastEventId, LAST_EVENT_ID, LAST_EVENT_ID_QUERY, LastEventId, MAX_LAST_EVENT_ID_LEN,
    MissingLastEventId,
};

#[cfg(test)]
mod tests;
