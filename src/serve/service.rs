//! What [`serve`](super::serve) accepts, and the service each connection runs: it gives every
//! request the peer's address and counts it as in progress until its response body is gone.
//! hyper calls it through [`Handover`], which answers the first request of a connection the
//! fast path handed over with the response the application already made for it.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::RequestBody;
use super::connection::{Accepted, Activity, InProgress};

/// The error type hyper takes from services and bodies.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`serve`](super::serve) can serve: either a tower service for `http::Request`s, which
/// each connection gets a clone of (an axum `Router` or `MethodRouter`, a router with layers,
/// any `tower::Service<Request<RequestBody>>` that is `Clone`), or a make-service
/// called once per connection with the peer's [`SocketAddr`] (axum's `into_make_service()`
/// and `into_make_service_with_connect_info::<SocketAddr>()`).
///
/// It is implemented for every type that is one of these and cannot be implemented by hand;
/// `M` only tells the two kinds apart.
pub trait Servable<M>: sealed::Sealed<M> {}

impl<T, M> Servable<M> for T where T: sealed::Sealed<M> {}

pub(super) mod sealed {
    use super::*;

    /// The service of one connection, with the bounds hyper needs.
    pub trait ConnService<B>:
        Service<
            Request<RequestBody>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
    {
    }

    impl<S, B> ConnService<B> for S
    where
        S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
    }

    /// A response body hyper can send from any thread.
    pub trait ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

    impl<B> ResBody for B
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
    }

    /// `Servable`'s workings, out of users' reach.
    pub trait Sealed<M>: Send + 'static {
        /// Ready to make the service of one more connection.
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

        /// Serves one accepted connection; the future ends when the connection is closed.
        fn connect(&mut self, accepted: Accepted) -> BoxFuture<'static, ()>;
    }

    /// Marks a service that each connection gets a clone of.
    pub struct Cloned<B>(PhantomData<fn() -> B>);

    /// Marks a make-service, called with the peer's address for each connection.
    pub struct Made<B>(PhantomData<fn() -> B>);

    impl<S, B> Sealed<Cloned<B>> for S
    where
        S: ConnService<B>,
        B: ResBody,
    {
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn connect(&mut self, accepted: Accepted) -> BoxFuture<'static, ()> {
            Box::pin(accepted.serve(self.clone()))
        }
    }

    impl<T, S, B> Sealed<Made<B>> for T
    where
        T: Service<SocketAddr, Response = S> + Send + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send + 'static,
        S: ConnService<B>,
        B: ResBody,
    {
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Service::poll_ready(self, cx).map_err(Into::into)
        }

        fn connect(&mut self, accepted: Accepted) -> BoxFuture<'static, ()> {
            let making = self.call(accepted.peer());
            Box::pin(async move {
                let service = match making.await {
                    Ok(service) => service,
                    Err(err) => {
                        let err: BoxError = err.into();
                        tracing::error!(%err, "cannot make a service for a connection");
                        return;
                    }
                };
                accepted.serve(service).await;
            })
        }
    }
}

/// The service of one connection: the application's, plus the peer address and the
/// connection's stall signal in each request's extensions and a count of the requests in
/// progress.
#[derive(Clone)]
pub(super) struct ConnectionService<S> {
    inner: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl<S> ConnectionService<S> {
    pub(super) fn new(inner: S, peer: SocketAddr, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            peer,
            activity,
        }
    }
}

impl<S, B> Service<Request<RequestBody>> for ConnectionService<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    type Response = Response<ConnectionBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let extensions = request.extensions_mut();
        extensions.insert(self.peer);
        #[cfg(feature = "axum")]
        extensions.insert(axum::extract::ConnectInfo(self.peer));
        extensions.insert(self.activity.stalled.clone());
        let in_progress = InProgress::start(&self.activity);
        ResponseFuture {
            inner: self.inner.call(request),
            in_progress: Some(in_progress),
        }
    }
}

pin_project! {
    /// The application's response future, whose body keeps counting the request as in
    /// progress.
    pub(super) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_progress: Option<InProgress>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ConnectionBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let in_progress = this.in_progress.take();
        Poll::Ready(Ok(response.map(|inner| ConnectionBody {
            inner,
            _in_progress: in_progress,
        })))
    }
}

pin_project! {
    /// The application's response body; the request is in progress until it is dropped.
    pub(super) struct ConnectionBody<B> {
        #[pin]
        inner: B,
        _in_progress: Option<InProgress>,
    }
}

impl<B: Body> Body for ConnectionBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the application answered to a request the fast path read, for hyper to send.
pub(super) type Answer<B> = Result<Response<ConnectionBody<B>>, BoxError>;

/// The service hyper runs on a connection: the connection's service for `Request<Incoming>`,
/// and, on a connection the fast path handed over after the application answered its first
/// request, that answer for the first request hyper reads (the same head, read again).
pub(super) struct Handover<S, B> {
    inner: ConnectionService<S>,
    first: Option<Arc<Mutex<Option<Answer<B>>>>>,
}

impl<S: Clone, B> Clone for Handover<S, B> {
    fn clone(&self) -> Self {
        Handover {
            inner: self.inner.clone(),
            first: self.first.clone(),
        }
    }
}

impl<S, B> Handover<S, B> {
    /// Every request to `inner`.
    pub(super) fn new(inner: ConnectionService<S>) -> Self {
        Handover { inner, first: None }
    }

    /// The first request answered with `answer`, the others by `inner`.
    pub(super) fn answered(inner: ConnectionService<S>, answer: Answer<B>) -> Self {
        Handover {
            inner,
            first: Some(Arc::new(Mutex::new(Some(answer)))),
        }
    }
}

impl<S, B> Service<Request<Incoming>> for Handover<S, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ConnectionBody<B>>;
    type Error = BoxError;
    type Future = HandoverFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.has_answer() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        // hyper reads one request at a time on HTTP/1, so the answer is not taken between
        // `poll_ready` and here.
        let answer = self
            .first
            .take()
            .and_then(|first| first.lock().ok().and_then(|mut answer| answer.take()));
        match answer {
            Some(answer) => HandoverFuture::Answered {
                answer: Some(answer),
            },
            None => HandoverFuture::Called {
                inner: self.inner.call(request.map(RequestBody::from)),
            },
        }
    }
}

impl<S, B> Handover<S, B> {
    /// Whether the first request's answer is still to be sent.
    fn has_answer(&self) -> bool {
        self.first
            .as_ref()
            .is_some_and(|first| first.lock().is_ok_and(|answer| answer.is_some()))
    }
}

pin_project! {
    /// The answer to one request hyper read.
    #[project = HandoverProj]
    pub(super) enum HandoverFuture<F, B> {
        Answered { answer: Option<Answer<B>> },
        Called { #[pin] inner: ResponseFuture<F> },
    }
}

impl<F, B, E> Future for HandoverFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Answer<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandoverProj::Answered { answer } => Poll::Ready(
                answer
                    .take()
                    .unwrap_or_else(|| Err("the answer was already taken".into())),
            ),
            HandoverProj::Called { inner } => inner.poll(cx).map_err(Into::into),
        }
    }
}
