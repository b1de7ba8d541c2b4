use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use super::ConnectionInfo;

/// A connect or disconnect notice from a [`Registry`](super::Registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// A stream opened.
    Connected(ConnectionInfo),
    /// A stream closed; the info holds its final counters.
    Disconnected(ConnectionInfo),
}

impl Presence {
    /// The connection the notice is about.
    pub fn info(&self) -> &ConnectionInfo {
        match self {
            Presence::Connected(info) | Presence::Disconnected(info) => info,
        }
    }
}

/// The notices of [`Registry::presence`](super::Registry::presence), as a [`Stream`].
///
/// A consumer that falls more than 1024 notices behind skips the oldest ones (logged at `warn`
/// level); compare with [`Registry::snapshot`](super::Registry::snapshot) to resynchronise.
pub struct PresenceStream {
    inner: BoxStream<'static, Presence>,
}

impl PresenceStream {
    pub(crate) fn new(receiver: broadcast::Receiver<Presence>) -> Self {
        let inner = futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(notice) => return Some((notice, receiver)),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "presence stream fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        PresenceStream {
            inner: Box::pin(inner),
        }
    }
}

impl fmt::Debug for PresenceStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceStream").finish_non_exhaustive()
    }
}

impl Stream for PresenceStream {
    type Item = Presence;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Presence>> {
        self.inner.as_mut().poll_next(cx)
    }
}
