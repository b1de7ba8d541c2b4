//! Handler return types: a stream of [`Event`]s as an event-stream response.
//!
//! [`EventStream`] turns any `Stream<Item = Event>` into a `text/event-stream` response;
//! [`TryEventStream`] does the same for a stream of `Result<Event, E>`, where the first error
//! ends the stream cleanly and is logged with `tracing`. Both are also the response body
//! ([`http_body::Body`]), so they work with any tower or hyper service, not only axum.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use futures_util::StreamExt;
//! use tokio_stream::wrappers::IntervalStream;
//! use tower_sse::{Event, EventStream, SseLayer};
//!
//! async fn ticks() -> EventStream<impl futures_util::Stream<Item = Event>> {
//!     let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
//!     EventStream::new(ticks.enumerate().map(|(n, _)| Event::data(format!("tick {n}"))))
//! }
//!
//! let app: Router = Router::new().route("/ticks", get(ticks)).layer(SseLayer::new());
//! # let _ = app;
//! ```

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Stream, TryStream};
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use crate::Event;

pin_project! {
    /// A `text/event-stream` response (and body) over a `Stream<Item = Event>`.
    ///
    /// The response is `200 OK` with `Content-Type: text/event-stream` and
    /// `Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`; each event's encoded bytes are one body frame,
    /// shared, not copied. Put [`SseLayer`](crate::SseLayer) around the route for keep-alive,
    /// CORS and the rest.
    #[must_use]
    pub struct EventStream<S> {
        #[pin]
        stream: Option<S>,
    }
}

impl<S> EventStream<S>
where
    S: Stream<Item = Event>,
{
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        EventStream {
            stream: Some(stream),
        }
    }

    /// The response with its headers, for services that are not axum handlers.
    pub fn into_http_response(self) -> Response<Self> {
        with_headers(self)
    }
}

impl<S> fmt::Debug for EventStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl<S> Body for EventStream<S>
where
    S: Stream<Item = Event>,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut this = self.project();
        let Some(stream) = this.stream.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match stream.poll_next(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(Frame::data(event.into_bytes())))),
            Poll::Ready(None) => {
                this.stream.set(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}

pin_project! {
    /// A `text/event-stream` response (and body) over a stream of `Result<Event, E>`.
    ///
    /// Events are sent as they come; the first error ends the stream cleanly (the client sees
    /// the connection close after the last complete event and reconnects) and is logged with
    /// `tracing` at `warn` level.
    #[must_use]
    pub struct TryEventStream<S> {
        #[pin]
        inner: EventStream<EndOnError<S>>,
    }
}

impl<S> TryEventStream<S>
where
    S: TryStream<Ok = Event>,
    S::Error: fmt::Display,
{
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        TryEventStream {
            inner: EventStream::new(EndOnError {
                stream: Some(stream),
            }),
        }
    }

    /// The response with its headers, for services that are not axum handlers.
    pub fn into_http_response(self) -> Response<Self> {
        with_headers(self)
    }
}

impl<S> fmt::Debug for TryEventStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryEventStream").finish_non_exhaustive()
    }
}

impl<S> Body for TryEventStream<S>
where
    S: TryStream<Ok = Event>,
    S::Error: fmt::Display,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

pin_project! {
    /// The events of a `TryStream` up to its first error, which is logged.
    struct EndOnError<S> {
        #[pin]
        stream: Option<S>,
    }
}

impl<S> Stream for EndOnError<S>
where
    S: TryStream<Ok = Event>,
    S::Error: fmt::Display,
{
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut this = self.project();
        let Some(stream) = this.stream.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match ready!(stream.try_poll_next(cx)) {
            Some(Ok(event)) => Poll::Ready(Some(event)),
            Some(Err(err)) => {
                tracing::warn!(error = %err, "event stream ended by an error");
                this.stream.set(None);
                Poll::Ready(None)
            }
            None => {
                this.stream.set(None);
                Poll::Ready(None)
            }
        }
    }
}

fn with_headers<B>(body: B) -> Response<B> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, crate::layer::CACHE_CONTROL);
    headers.insert(
        http::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

#[cfg(feature = "axum")]
mod axum_impls {
    use std::fmt;

    use axum::body::Body;
    use axum::response::{IntoResponse, Response};
    use futures_util::{Stream, TryStream};

    use super::{EventStream, TryEventStream};
    use crate::Event;

    impl<S> IntoResponse for EventStream<S>
    where
        S: Stream<Item = Event> + Send + 'static,
    {
        fn into_response(self) -> Response {
            self.into_http_response().map(Body::new)
        }
    }

    impl<S> IntoResponse for TryEventStream<S>
    where
        S: TryStream<Ok = Event> + Send + 'static,
        S::Error: fmt::Display,
    {
        fn into_response(self) -> Response {
            self.into_http_response().map(Body::new)
        }
    }
}
