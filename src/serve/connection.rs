//! One accepted connection: served by hyper, closed when it has had no request in progress
//! for the idle timeout, drained at shutdown, reset when the layer ends one of its streams as
//! stalled and dropped at the shutdown deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::fast::Conn;
use super::io::ServeIo;
use super::service::ConnectionService;
use super::service::sealed::{ConnService, ResBody};
use crate::registry::StallSignal;

/// What every connection of one server shares.
pub(super) struct Shared {
    pub(super) builder: auto::Builder<TokioExecutor>,
    /// hyper's HTTP/1 server with the same settings, for connections the fast path hands over
    /// once it has taken a request on them (HTTP/1 from then on).
    pub(super) http1: hyper::server::conn::http1::Builder,
    /// For the fast path's heads; hyper's builder has it for hyper's.
    pub(super) header_read_timeout: Duration,
    pub(super) http1_fast_path: bool,
    pub(super) idle_timeout: Duration,
    pub(super) tcp_nodelay: bool,
    pub(super) send_buffer_size: Option<usize>,
    /// Cancelled when shutdown starts: connections finish what is in progress, then close.
    pub(super) draining: CancellationToken,
    /// Cancelled at the shutdown deadline: every connection still open is closed.
    pub(super) deadline: CancellationToken,
}

/// A connection the listener accepted, with what it needs to be served.
pub struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
}

impl Accepted {
    pub(super) fn new(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        Self {
            stream,
            peer,
            shared,
        }
    }

    /// The client's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Serves the connection with `service` until it is closed.
    pub(super) async fn serve<S, B>(self, service: S)
    where
        S: ConnService<B>,
        B: ResBody,
    {
        let Self {
            stream,
            peer,
            shared,
        } = self;
        let activity = Arc::new(Activity::default());
        let io = ServeIo::new(
            stream,
            shared.tcp_nodelay,
            shared.send_buffer_size,
            activity.clone(),
        );
        let service = ConnectionService::new(service, peer, activity.clone());
        let conn = Conn::new(io, service, shared.clone(), shared.http1_fast_path);
        let connection = Connection {
            conn,
            idle: tokio::time::sleep(shared.idle_timeout),
            draining: shared.draining.clone().cancelled_owned(),
            deadline: shared.deadline.clone().cancelled_owned(),
            idle_timeout: shared.idle_timeout,
            idle_armed_for: Some(0),
            closing_idle: false,
            drained: false,
            activity,
            peer,
        };
        drop(shared);
        connection.await;
    }
}

/// What the connection's requests do, as its watchdog sees it.
#[derive(Default)]
pub(super) struct Activity {
    /// Requests in progress in the low 32 bits, requests started (wrapping) in the high 32.
    requests: AtomicU64,
    /// Woken when the last request in progress ends.
    idle: AtomicWaker,
    /// Set when the connection is closed at the shutdown deadline: the socket is then reset,
    /// so that the kernel drops what it could not send instead of trying on.
    reset: AtomicBool,
    /// Signalled when the layer's watchdog ends a stream of this connection whose client
    /// stopped reading ([`SseLayer::write_timeout`](crate::SseLayer::write_timeout)): hyper
    /// would never poll its body again, so the connection is reset here. Every request carries
    /// it in its extensions for the layer to find.
    pub(super) stalled: StallSignal,
}

const STARTED: u64 = 1 << 32;
const IN_PROGRESS: u64 = STARTED - 1;

impl Activity {
    /// Requests in progress, and requests started so far (wrapping).
    fn requests(&self) -> (u64, u32) {
        let requests = self.requests.load(Ordering::Acquire);
        (requests & IN_PROGRESS, (requests >> 32) as u32)
    }

    pub(super) fn reset_on_close(&self) -> bool {
        self.reset.load(Ordering::Relaxed)
    }
}

/// A request in progress on its connection, from the call of the service until its response
/// body is dropped.
pub(super) struct InProgress(Arc<Activity>);

impl InProgress {
    pub(super) fn start(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(STARTED + 1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let before = self.0.requests.fetch_sub(1, Ordering::AcqRel);
        if before & IN_PROGRESS == 1 {
            self.0.idle.wake();
        }
    }
}

pin_project! {
    /// The connection (the fast path's, then hyper's), with the idle timeout, the drain and the
    /// deadline around it.
    struct Connection<S, B>
    where
        S: ConnService<B>,
        B: ResBody,
    {
        conn: Conn<S, B>,
        #[pin]
        idle: Sleep,
        #[pin]
        draining: WaitForCancellationFutureOwned,
        #[pin]
        deadline: WaitForCancellationFutureOwned,
        idle_timeout: Duration,
        // The count of requests started when the idle timer was last set, if it is set.
        idle_armed_for: Option<u32>,
        // hyper was asked to close the connection (the idle timer went off once on a
        // connection that has served requests, or shutdown started): the next idle timeout
        // closes it here.
        closing_idle: bool,
        // Shutdown has started and hyper was asked to finish.
        drained: bool,
        activity: Arc<Activity>,
        peer: SocketAddr,
    }
}

impl<S, B> Future for Connection<S, B>
where
    S: ConnService<B>,
    B: ResBody,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if this.deadline.poll(cx).is_ready() {
            tracing::debug!(peer = %this.peer, "shutdown deadline: closing the connection");
            this.activity.reset.store(true, Ordering::Relaxed);
            return Poll::Ready(());
        }
        if this.activity.stalled.poll_stalled(cx).is_ready() {
            tracing::debug!(peer = %this.peer, "a stream stalled: resetting the connection");
            this.activity.reset.store(true, Ordering::Relaxed);
            return Poll::Ready(());
        }
        if !*this.drained && this.draining.poll(cx).is_ready() {
            *this.drained = true;
            // hyper is asked to finish now; the idle timeout, if it comes, closes it here.
            *this.closing_idle = true;
            if this.activity.requests().1 == 0 {
                // No request yet, maybe half a head: nothing to finish.
                return Poll::Ready(());
            }
            this.conn.graceful_shutdown();
        }
        if poll_conn(this.conn, cx, this.peer).is_ready() {
            return Poll::Ready(());
        }

        // Register before reading the count, so that a request ending in between wakes us.
        this.activity.idle.register(cx.waker());
        let (in_progress, started) = this.activity.requests();
        if in_progress > 0 {
            *this.idle_armed_for = None;
            return Poll::Pending;
        }
        if *this.idle_armed_for != Some(started) {
            *this.idle_armed_for = Some(started);
            this.idle
                .as_mut()
                .reset(Instant::now() + *this.idle_timeout);
        }
        if this.idle.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if started == 0 || *this.closing_idle {
            // It never sent a request (or half a head), or hyper could not close it within
            // another idle timeout: close it here.
            tracing::debug!(peer = %this.peer, "idle timeout: closing the connection");
            return Poll::Ready(());
        }
        // It has served requests: let hyper close it cleanly (HTTP/2: with a GOAWAY), within
        // one more idle timeout.
        *this.closing_idle = true;
        this.conn.graceful_shutdown();
        this.idle
            .as_mut()
            .reset(Instant::now() + *this.idle_timeout);
        if poll_conn(this.conn, cx, this.peer).is_ready() {
            return Poll::Ready(());
        }
        let _ = this.idle.poll(cx);
        Poll::Pending
    }
}

/// Polls the connection; ready once it has ended.
fn poll_conn<S, B>(conn: &mut Conn<S, B>, cx: &mut Context<'_>, peer: &SocketAddr) -> Poll<()>
where
    S: ConnService<B>,
    B: ResBody,
{
    let result = std::task::ready!(Pin::new(conn).poll(cx));
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "connection ended with an error");
    }
    Poll::Ready(())
}
