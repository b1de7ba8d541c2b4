//! Handler return types: a stream of [`Event`]s as an event-stream response.
//!
//! [`EventStream`] turns any `Stream<Item = Event>` into a `text/event-stream` response;
//! [`TryEventStream`] does the same for a stream of `Result<Event, E>`, where the first error
//! ends the stream with an `error` event the client can see (the error itself is logged with
//! `tracing`). Both are also the response body ([`http_body::Body`]), so they work with any
//! tower or hyper service, not only axum.
//!
//! # How a stream ends
//!
//! A client cannot tell a stream that ended from a connection that was cut unless the stream
//! says so. Both types can end with an event of their own:
//!
//! | the stream…                | the client gets, last                                     |
//! |----------------------------|-----------------------------------------------------------|
//! | ends by itself             | the [`end_with`](EventStream::end_with) event, if set      |
//! | fails ([`TryEventStream`]) | `event: error`, `data: {"message":"the stream failed"}`   |
//! | loses its client           | nothing: the stream is dropped, and so is its producer    |
//!
//! A browser's `EventSource` reconnects whenever a stream ends; a page that must not ask again
//! closes it when it sees the last event (`source.close()`).
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

/// The name of the event a [`TryEventStream`] ends with when its stream fails.
const ERROR_EVENT: &str = "error";

/// The data of that event: a message that is safe to show to anyone.
const ERROR_DATA: &str = r#"{"message":"the stream failed"}"#;

/// The event a [`TryEventStream`] ends with when its stream fails, unless told otherwise:
/// `event: error` and `data: {"message":"the stream failed"}`.
pub(crate) fn default_error_event() -> Event {
    Event::builder()
        .event(ERROR_EVENT)
        .data(ERROR_DATA)
        .build()
        // A constant name and data always build.
        .unwrap_or_else(|_| Event::data(ERROR_DATA))
}

pin_project! {
    /// A `text/event-stream` response (and body) over a `Stream<Item = Event>`.
    ///
    /// The response is `200 OK` with `Content-Type: text/event-stream` and
    /// `Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`; each event's encoded bytes are one body frame,
    /// shared, not copied. Put [`SseLayer`](crate::SseLayer) around the route for keep-alive,
    /// CORS and the rest.
    ///
    /// The stream is the producer: when the client goes away the server drops the body, and
    /// with it the stream and whatever work it was doing (nothing more is polled).
    #[must_use]
    pub struct EventStream<S> {
        #[pin]
        stream: Option<S>,
        end: Option<Event>,
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
            end: None,
        }
    }

    /// Sends `event` after the last event of the stream, when the stream ends by itself; not
    /// when the client goes away first. It tells a client that the answer is complete, which a
    /// closed connection alone does not. Calling this again replaces the event.
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use futures_util::stream;
    /// use tower_sse::{Event, EventStream, SseLayer};
    ///
    /// // event: done
    /// // data: {"tokens":2}
    /// let done = Event::builder().event("done").data(r#"{"tokens":2}"#).build()?;
    /// let app: Router = Router::new()
    ///     .route(
    ///         "/answer",
    ///         post(move || async move {
    ///             let tokens = [Event::data("Hello"), Event::data(" world")];
    ///             EventStream::new(stream::iter(tokens)).end_with(done)
    ///         }),
    ///     )
    ///     .layer(SseLayer::new());
    /// # let _ = app;
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn end_with(mut self, event: Event) -> Self {
        self.end = Some(event);
        self
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
        let event = match this.stream.as_mut().as_pin_mut() {
            None => None,
            Some(stream) => match ready!(stream.poll_next(cx)) {
                Some(event) => Some(event),
                None => {
                    this.stream.set(None);
                    this.end.take()
                }
            },
        };
        Poll::Ready(event.map(|event| Ok(Frame::data(event.into_bytes()))))
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.end.is_none()
    }
}

pin_project! {
    /// A `text/event-stream` response (and body) over a stream of `Result<Event, E>`.
    ///
    /// Events are sent as they come. The first error ends the stream with an event the client
    /// can see, by default
    ///
    /// ```text
    /// event: error
    /// data: {"message":"the stream failed"}
    ///
    /// ```
    ///
    /// whatever the error was: its details are for the logs (`tracing`, at `warn` level), not
    /// for clients. Choose the event with [`error_event`](Self::error_event) or
    /// [`error_event_with`](Self::error_event_with). A stream that ends without an error ends
    /// with the [`end_with`](Self::end_with) event, if one is set.
    ///
    /// In a browser, listen with `source.addEventListener("error", e => …)` and tell this event
    /// (a `MessageEvent`, whose `e.data` is the message) from a connection error (a plain
    /// `Event`, without `data`), which fires the same listener.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use futures_util::{TryStream, stream};
    /// use tower_sse::{Event, SseLayer, TryEventStream};
    ///
    /// async fn report() -> TryEventStream<impl TryStream<Ok = Event, Error = String>> {
    ///     let rows = stream::iter([Ok(Event::data("row 1")), Err("disk on fire".to_owned())]);
    ///     // The client sees `row 1`, then `event: error` with the default message.
    ///     TryEventStream::new(rows)
    /// }
    ///
    /// let app: Router = Router::new().route("/report", get(report)).layer(SseLayer::new());
    /// # let _ = app;
    /// ```
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
                end: None,
                on_error: OnError::Default,
            }),
        }
    }

    /// Sends `event` after the last event of the stream, when the stream ends by itself
    /// without an error; see [`EventStream::end_with`]. Calling this again replaces the event.
    pub fn end_with(self, event: Event) -> Self {
        self.update(|s| s.end = Some(event))
    }

    /// Ends a failed stream with `event` instead of the default `error` event. The error
    /// itself is still logged.
    ///
    /// ```
    /// use futures_util::stream;
    /// use tower_sse::{Event, TryEventStream};
    ///
    /// let failed = Event::builder().event("failed").data("try again later").build()?;
    /// let body = TryEventStream::new(stream::iter([Err::<Event, _>("timeout")]))
    ///     .error_event(failed);
    /// # let _ = body;
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn error_event(self, event: Event) -> Self {
        self.update(|s| s.on_error = OnError::Event(event))
    }

    /// Ends a failed stream with the event `make` builds from the error, e.g. to tell a
    /// client what it can do about it. Whatever it puts in the event reaches the client: keep
    /// internal details out. The error is still logged.
    ///
    /// ```
    /// use futures_util::stream;
    /// use tower_sse::{Event, TryEventStream};
    ///
    /// #[derive(Debug)]
    /// enum AnswerError { RateLimited, Backend(String) }
    ///
    /// impl std::fmt::Display for AnswerError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         match self {
    ///             AnswerError::RateLimited => f.write_str("rate limited"),
    ///             AnswerError::Backend(why) => write!(f, "backend: {why}"),
    ///         }
    ///     }
    /// }
    ///
    /// let answer = stream::iter([Ok(Event::data("Hel")), Err(AnswerError::RateLimited)]);
    /// let body = TryEventStream::new(answer).error_event_with(|err: &AnswerError| {
    ///     let message = match err {
    ///         AnswerError::RateLimited => r#"{"message":"too many requests, try again later"}"#,
    ///         AnswerError::Backend(_) => r#"{"message":"the answer failed"}"#,
    ///     };
    ///     Event::builder().event("error").data(message).build().unwrap()
    /// });
    /// # let _ = body;
    /// ```
    pub fn error_event_with<F>(self, make: F) -> Self
    where
        F: Fn(&S::Error) -> Event + Send + Sync + 'static,
    {
        self.update(|s| s.on_error = OnError::With(Box::new(make)))
    }

    /// Changes how the stream ends; too late (no effect) once it has ended.
    fn update(mut self, f: impl FnOnce(&mut EndOnError<S>)) -> Self {
        if let Some(stream) = self.inner.stream.as_mut() {
            f(stream);
        }
        self
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

/// Builds the event a failed stream ends with from its error.
///
/// A trait of its own rather than `dyn Fn(&S::Error) -> Event`, so that [`TryEventStream`]
/// needs no `S: TryStream` bound where it is declared.
trait ErrorEvent<S>: Send + Sync {
    fn event(&self, err: &S::Error) -> Event
    where
        S: TryStream;
}

impl<S, F> ErrorEvent<S> for F
where
    S: TryStream,
    F: Fn(&S::Error) -> Event + Send + Sync,
{
    fn event(&self, err: &S::Error) -> Event {
        self(err)
    }
}

/// Which event a failed stream ends with.
enum OnError<S> {
    /// [`default_error_event`], built only when a stream fails.
    Default,
    Event(Event),
    With(Box<dyn ErrorEvent<S>>),
}

pin_project! {
    /// The events of a `TryStream`, then one more: the terminal event, if any, when it ends,
    /// or the error event (and the error logged) at its first error.
    struct EndOnError<S> {
        #[pin]
        stream: Option<S>,
        end: Option<Event>,
        on_error: OnError<S>,
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
                let event = match this.on_error {
                    OnError::Default => default_error_event(),
                    OnError::Event(event) => event.clone(),
                    OnError::With(make) => make.event(&err),
                };
                this.stream.set(None);
                *this.end = None;
                Poll::Ready(Some(event))
            }
            None => {
                this.stream.set(None);
                Poll::Ready(this.end.take())
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
