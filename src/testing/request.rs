//! [`get_events`]: an `EventSource`'s request, sent to a router without a server.

use std::future::poll_fn;

use axum::body::Body;
use http::header::{ACCEPT, HOST, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use tower_service::Service;

use super::EventReader;

/// Starts a `GET uri` request like the one a browser's `EventSource` sends, to be sent to
/// `service` with [`send`](GetEvents::send): an axum [`Router`](axum::Router) (or `&mut` one),
/// or any tower service of [`Request<Body>`](http::Request).
///
/// The request carries `Accept: text/event-stream` and a `Host` header, as a browser's does:
/// the authority of an absolute `uri` (`http://example.com/events`), else `localhost`; a
/// [`header`](GetEvents::header) named `Host` replaces it. Add a
/// [`last_event_id`](GetEvents::last_event_id) to reconnect, and any other
/// [`header`](GetEvents::header) (`Origin`, `Cookie`, `Authorization`) the route needs.
///
/// See the [module docs](super) for an example.
///
/// # Panics
///
/// When `uri` is not a valid URI.
#[track_caller]
pub fn get_events<S, U>(service: S, uri: U) -> GetEvents<S>
where
    Uri: TryFrom<U>,
    <Uri as TryFrom<U>>::Error: Into<http::Error>,
{
    let mut request = Request::get(uri)
        .header(ACCEPT, "text/event-stream")
        .body(Body::empty())
        .unwrap_or_else(|err| panic!("get_events: invalid URI: {err}"));
    let host = request
        .uri()
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        .unwrap_or(HeaderValue::from_static("localhost"));
    request.headers_mut().insert(HOST, host);
    GetEvents { service, request }
}

/// An event-stream request about to be sent; see [`get_events`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Debug)]
pub struct GetEvents<S> {
    service: S,
    request: Request<Body>,
}

impl<S> GetEvents<S> {
    /// Sends `Last-Event-ID: id`, as a browser reconnecting after it saw the event `id` does:
    /// typically [`EventReader::last_event_id`] of an earlier response. An empty `id` sends no
    /// header, as a browser that has seen no id sends none.
    ///
    /// # Panics
    ///
    /// When `id` cannot be a header value (it contains a control character such as CR, LF or
    /// NUL). Send such bytes with [`header`](Self::header) and a [`HeaderValue`] made from
    /// them, if a test needs to.
    #[track_caller]
    pub fn last_event_id(mut self, id: &str) -> Self {
        if id.is_empty() {
            self.request.headers_mut().remove("last-event-id");
            return self;
        }
        let value = HeaderValue::from_str(id)
            .unwrap_or_else(|err| panic!("last_event_id: {id:?} is not a header value: {err}"));
        self.request
            .headers_mut()
            .insert(HeaderName::from_static("last-event-id"), value);
        self
    }

    /// Adds a header to the request (after any of the same name), except `Host`, which
    /// replaces the one [`get_events`] set: a request has one.
    ///
    /// # Panics
    ///
    /// When `name` or `value` is not valid in a header.
    #[track_caller]
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        let name = HeaderName::try_from(name)
            .map_err(Into::into)
            .unwrap_or_else(|err| panic!("header: invalid name: {err}"));
        let value = HeaderValue::try_from(value)
            .map_err(Into::into)
            .unwrap_or_else(|err| panic!("header: invalid value for {name}: {err}"));
        if name == HOST {
            self.request.headers_mut().insert(name, value);
        } else {
            self.request.headers_mut().append(name, value);
        }
        self
    }

    /// Sends the request (waiting for the service to be ready, as
    /// `tower::ServiceExt::oneshot` does) and returns the response, its body ready to be read
    /// as events: `response.status()`, `response.headers()`, `response.body_mut().take(n)`.
    ///
    /// # Errors
    ///
    /// The service's error (never, for an axum `Router`).
    pub async fn send<B>(self) -> Result<Response<EventReader<B>>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
    {
        let GetEvents {
            mut service,
            request,
        } = self;
        poll_fn(|cx| service.poll_ready(cx)).await?;
        let response = service.call(request).await?;
        Ok(response.map(EventReader::new))
    }
}
