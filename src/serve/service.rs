//! What [`serve`](super::serve) accepts, and the service each connection runs: it gives every
//! request the peer's address and counts it as in progress until its response body is gone.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::connection::{Accepted, Activity, InProgress};

/// The error type hyper takes from services and bodies.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`serve`](super::serve) can serve: either a tower service for `http::Request`s, which
/// each connection gets a clone of (an axum `Router` or `MethodRouter`, a router with layers,
/// any `tower::Service<Request<hyper::body::Incoming>>` that is `Clone`), or a make-service
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
            Request<Incoming>,
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
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
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

impl<S, B> Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<ConnectionBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
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
