//! [`RequestBody`]: the body of every request [`serve`](super::serve) hands the application.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The body of a request served by [`serve`](super::serve): hyper's [`Incoming`] body, or none
/// for a request the HTTP/1 [fast path](super::Serve::http1_fast_path) read (a bodyless
/// `GET`).
///
/// An axum `Router` takes it as it takes any body (its handlers see `axum::body::Body`); a
/// hand-written tower service takes `http::Request<RequestBody>`.
pub struct RequestBody(Inner);

enum Inner {
    Incoming(Incoming),
    Empty,
}

impl RequestBody {
    /// A body with no bytes.
    pub(super) fn empty() -> Self {
        RequestBody(Inner::Empty)
    }
}

impl From<Incoming> for RequestBody {
    fn from(incoming: Incoming) -> Self {
        RequestBody(Inner::Incoming(incoming))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            Inner::Incoming(incoming) => Pin::new(incoming).poll_frame(cx),
            Inner::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Incoming(incoming) => incoming.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Incoming(incoming) => incoming.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Incoming(incoming) => f.debug_tuple("RequestBody").field(incoming).finish(),
            Inner::Empty => f.write_str("RequestBody(Empty)"),
        }
    }
}
