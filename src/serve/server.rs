//! [`Serve`]: the server's settings, and the accept loop with its shutdown.

use std::fmt;
use std::future::{Future, IntoFuture, Pending};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{Accepted, Shared};
use super::service::Servable;

/// Default [`header_read_timeout`](Serve::header_read_timeout).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`idle_timeout`](Serve::idle_timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`send_buffer_size`](Serve::send_buffer_size).
const SEND_BUFFER_SIZE: usize = 64 * 1024;
/// Default [`shutdown_deadline`](Serve::shutdown_deadline).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// Longer timeouts are taken as this long, so that adding them to an instant cannot overflow.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A server being set up, returned by [`serve`](super::serve); `.await` it to run it.
///
/// `A` is the application, `M` tells how it is served (see [`Servable`]), and `F` is the
/// shutdown signal, if [`with_graceful_shutdown`](Self::with_graceful_shutdown) gave one.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<A, M, F = Pending<()>> {
    listener: TcpListener,
    app: A,
    signal: F,
    settings: Settings,
    _kind: PhantomData<fn() -> M>,
}

#[derive(Clone, Debug)]
struct Settings {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    tcp_nodelay: bool,
    send_buffer_size: Option<usize>,
    shutdown_deadline: Duration,
    http1_fast_path: bool,
}

impl<A, M> Serve<A, M> {
    pub(super) fn new(listener: TcpListener, app: A) -> Self {
        Self {
            listener,
            app,
            signal: std::future::pending(),
            settings: Settings {
                header_read_timeout: HEADER_READ_TIMEOUT,
                idle_timeout: IDLE_TIMEOUT,
                tcp_nodelay: true,
                send_buffer_size: Some(SEND_BUFFER_SIZE),
                shutdown_deadline: SHUTDOWN_DEADLINE,
                http1_fast_path: true,
            },
            _kind: PhantomData,
        }
    }
}

impl<A, M, F> Serve<A, M, F> {
    /// How long a client may take to send a request head, from when the server starts
    /// reading it (at the connection's start, or after the previous response on a kept-alive
    /// HTTP/1 connection). A client sending its head a byte at a time (slowloris) is cut off
    /// then; an HTTP/1 connection that stays idle between requests is closed after it too.
    /// HTTP/2 heads are bounded by the [`idle_timeout`](Self::idle_timeout) instead. Default
    /// 10 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.header_read_timeout = timeout.min(LONGEST);
        self
    }

    /// How long a connection may stay open with no request in progress: one that sends
    /// nothing after connecting, or only part of a head, or that sits idle between requests.
    /// A request is in progress from the moment its head is complete until its response body
    /// has been sent (an event stream's, until it ends), so open streams are never idle.
    /// Default 30 s.
    ///
    /// A connection that never completed a request is closed at once; one that has served
    /// requests is closed cleanly (with a `GOAWAY` on HTTP/2), or after one more idle
    /// timeout if that cannot be done.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = timeout.min(LONGEST);
        self
    }

    /// Whether to set `TCP_NODELAY` on every connection, so that each event leaves at once
    /// instead of waiting for the acknowledgement of the previous one. Default `true`.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.settings.tcp_nodelay = nodelay;
        self
    }

    /// The kernel send buffer of every connection (`SO_SNDBUF`), in bytes: what a client that
    /// stops reading can pin of the kernel's memory, which no process figure shows. Linux
    /// doubles the value it is given (the other half is for its bookkeeping), so `serve` asks
    /// for half, and a socket holds at most `bytes`; setting it also turns off the kernel's
    /// automatic sizing, which would otherwise grow a stalled connection's buffer to 4 MiB.
    /// Raise it for routes that send large bodies to distant clients, whose throughput it
    /// bounds to about this size per round trip. This replaces a size set on the listener.
    /// Default 64 KiB.
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.settings.send_buffer_size = Some(bytes);
        self
    }

    /// Leaves the send buffer to the kernel (its automatic sizing, or a size set on the
    /// listener, which accepted connections inherit). See
    /// [`send_buffer_size`](Self::send_buffer_size).
    pub fn no_send_buffer_size(mut self) -> Self {
        self.settings.send_buffer_size = None;
        self
    }

    /// How long a graceful shutdown may take, counted from the shutdown signal: connections
    /// still open then are closed, with a reset, whatever they were doing (a client that
    /// stopped reading, a head half sent, a response that does not end). Set it above the
    /// layer's [`shutdown_grace`](crate::SseLayer::shutdown_grace), if any, so that
    /// streams end with their `retry:` hint first. Default 10 s.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.settings.shutdown_deadline = deadline.min(LONGEST);
        self
    }

    /// Whether HTTP/1.1 event streams take the fast path. The head of a connection's request is
    /// parsed here, with hyper's own parser (`httparse`); a plain bodyless `GET` is answered
    /// by the application, and if its response is an event stream (`200`,
    /// `text/event-stream`), that is written straight on the socket: no read buffer and no
    /// write buffer held for the stream's life (hyper keeps 8 KiB of each per connection), and
    /// what the stream has ready sent as one chunk in one system call. When the stream ends,
    /// the connection reads its next head the same way.
    ///
    /// Everything else goes to hyper, with the bytes already read, and from then on hyper
    /// serves the connection: a response that is not an event stream (hyper sends it, as the
    /// answer to the same head read again), request bodies, `HEAD` and other methods, HTTP/1.0,
    /// upgrades, `Expect`, `Connection: close`, pipelined requests, the HTTP/2 preface, and any
    /// head that is malformed, ambiguous or over 64 KiB (hyper answers it as it would have).
    /// Timeouts, the drain, the deadline and stalled-reader resets work the same on both paths.
    /// Default `true`; `false` serves every request with hyper.
    pub fn http1_fast_path(mut self, enabled: bool) -> Self {
        self.settings.http1_fast_path = enabled;
        self
    }

    /// Shuts the server down gracefully once `signal` resolves: it stops accepting, closes the
    /// connections that have nothing in progress, lets the others finish their responses
    /// (within the [`shutdown_deadline`](Self::shutdown_deadline)), then returns.
    ///
    /// Give it [`SseLayer::shutdown_on`](crate::SseLayer::shutdown_on), so that every event
    /// stream ends (with a `retry:` hint) when the signal comes:
    /// `.with_graceful_shutdown(sse.shutdown_on(tower_sse::shutdown_signal()))`.
    pub fn with_graceful_shutdown<G>(self, signal: G) -> Serve<A, M, G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            app: self.app,
            signal,
            settings: self.settings,
            _kind: PhantomData,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<A, M, F> fmt::Debug for Serve<A, M, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<A, M, F> IntoFuture for Serve<A, M, F>
where
    A: Servable<M>,
    M: 'static,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = BoxFuture<'static, io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<A, M, F> Serve<A, M, F>
where
    A: Servable<M>,
    F: Future<Output = ()> + Send + 'static,
{
    /// Accepts connections until the signal, then drains them within the deadline.
    async fn run(self) -> io::Result<()> {
        let Self {
            listener,
            mut app,
            signal,
            settings,
            _kind,
        } = self;
        let shared = Arc::new(Shared {
            builder: builder(&settings),
            http1: http1_builder(&settings),
            header_read_timeout: settings.header_read_timeout,
            http1_fast_path: settings.http1_fast_path,
            idle_timeout: settings.idle_timeout,
            tcp_nodelay: settings.tcp_nodelay,
            send_buffer_size: settings.send_buffer_size,
            draining: CancellationToken::new(),
            deadline: CancellationToken::new(),
        });
        let connections = TaskTracker::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = accept(&listener, &mut app) => accepted,
            };
            let Some((stream, peer)) = accepted else {
                continue;
            };
            let connection = app.connect(Accepted::new(stream, peer, shared.clone()));
            connections.spawn(connection);
        }

        // Stop accepting: new connections are refused from now on.
        drop(listener);
        tracing::debug!(
            connections = connections.len(),
            "shutdown: draining the connections"
        );
        shared.draining.cancel();
        connections.close();
        let drained = tokio::time::timeout(settings.shutdown_deadline, connections.wait()).await;
        if drained.is_err() {
            tracing::info!(
                connections = connections.len(),
                "shutdown deadline: closing the connections still open"
            );
            shared.deadline.cancel();
            connections.wait().await;
        }
        Ok(())
    }
}

/// hyper's settings for every connection.
fn builder(settings: &Settings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    // As axum's `serve` does, for WebSockets over HTTP/2.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}

/// hyper's HTTP/1 settings, as [`builder`] sets them, for a connection known to be HTTP/1.
fn http1_builder(settings: &Settings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
}

/// Waits until the app is ready for a connection, then accepts one; `None` after an error
/// that was dealt with (logged, and waited out if it is not about one connection).
async fn accept<A, M>(
    listener: &TcpListener,
    app: &mut A,
) -> Option<(tokio::net::TcpStream, SocketAddr)>
where
    A: Servable<M>,
{
    if let Err(err) = std::future::poll_fn(|cx| app.poll_ready(cx)).await {
        tracing::error!(%err, "the service cannot take connections");
        tokio::time::sleep(Duration::from_secs(1)).await;
        return None;
    }
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(err) if is_connection_error(&err) => None,
        Err(err) => {
            // Most likely out of file descriptors (EMFILE): wait for some to be freed rather
            // than spin, as hyper's and axum's servers do.
            tracing::error!(%err, "cannot accept a connection");
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

/// An error about one connection, which the next accept does not repeat.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
