//! Production serving: [`serve`] an axum `Router`, or any tower service, over HTTP/1 and
//! HTTP/2 with every connection bounded in time and memory, and a graceful shutdown that
//! completes within its deadline whatever clients do.
//!
//! `axum::serve` is made to be simple and sets none of this: no timer, so a request head sent
//! a byte at a time (slowloris) or a connection that never sends anything stays open for
//! good, and the kernel's automatic send buffer, which grows to 4 MiB for a client that stops
//! reading; its graceful shutdown waits for every connection, so one client with a full TCP
//! window, or half a request head, keeps it from ever returning. This `serve`, on hyper-util
//! as axum's is, adds:
//!
//! - a [header read timeout](Serve::header_read_timeout) (10 s) and an
//!   [idle timeout](Serve::idle_timeout) (30 s) for connections with no request in progress;
//! - `TCP_NODELAY` and a [send buffer](Serve::send_buffer_size) of 64 KiB, so that a client
//!   that stops reading pins no more of the kernel's memory than that;
//! - the socket's view of a client that stops reading, for the layer's
//!   [write timeout](crate::SseLayer::write_timeout): a stream whose socket has taken no byte
//!   for that long is ended, and its connection reset, even while hyper's write queue still
//!   takes keep-alives (with `axum::serve`, the layer sees the stall only once that queue is
//!   full, up to 16 keep-alive intervals later);
//! - the peer's address in every request's extensions, as a [`SocketAddr`](std::net::SocketAddr)
//!   and (feature `axum`) as axum's `ConnectInfo<SocketAddr>`, so the layer's per-peer limits
//!   and registry see who is connected, and handlers can extract it, without
//!   `into_make_service_with_connect_info`;
//! - a [graceful shutdown](Serve::with_graceful_shutdown) with a
//!   [deadline](Serve::shutdown_deadline) (10 s), after which the connections still open are
//!   reset;
//! - an [HTTP/1 fast path](Serve::http1_fast_path) for event streams: a stream is written
//!   straight on the socket, each event as one chunk of its shared bytes, and holds no read or
//!   write buffer while it lasts (an idle stream costs about 3 KiB of the server's memory,
//!   against about 21 KiB through hyper); every other request goes to hyper, untouched.
//!
//! It serves what `axum::serve` does: a `Router` (or any `Clone` tower service of
//! `http::Request<`[`RequestBody`]`>`), `into_make_service()` and
//! `into_make_service_with_connect_info::<SocketAddr>()` (see [`Servable`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use tower_sse::SseLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let sse = SseLayer::new().max_connections_per_peer(10); // sees peers: `serve` gives them
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(sse.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let addr = listener.local_addr()?;
//! # let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # let signal = async { let _ = stopped.await; };
//! // `signal` would be `tower_sse::shutdown_signal()`: SIGINT or SIGTERM.
//! let server = tower_sse::serve(listener, app)
//!     .header_read_timeout(Duration::from_secs(10))
//!     .idle_timeout(Duration::from_secs(30))
//!     .send_buffer_size(64 * 1024)
//!     .with_graceful_shutdown(sse.shutdown_on(signal)) // ends every stream, then stops
//!     .shutdown_deadline(Duration::from_secs(10)); // ...within 10 s, whatever clients do
//! # let server = tokio::spawn(server.into_future());
//! # let body = reqwest::get(format!("http://{addr}/")).await.unwrap().text().await.unwrap();
//! # assert_eq!(body, "hello");
//! # stop.send(()).unwrap();
//! # server.await.unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layer order and limits
//!
//! The header and idle timeouts bound connections before any request exists; once a request
//! is in progress, the layer bounds it: its connection limits refuse streams over the caps,
//! and its shutdown ends every stream so that the drain is quick. The shutdown deadline is the
//! backstop for what neither can end, such as a response the client does not read.

#![cfg(feature = "serve")]

mod body;
mod connection;
mod fast;
mod head;
mod io;
mod server;
mod service;

pub use body::RequestBody;
pub use server::Serve;
pub use service::Servable;

use tokio::net::TcpListener;

/// Serves `app` on `listener`, over HTTP/1 and HTTP/2, until the future it returns is
/// dropped or, with [`with_graceful_shutdown`](Serve::with_graceful_shutdown), until the
/// shutdown completes. See the [module documentation](self) for what it does and its
/// defaults, and [`Serve`] for the settings.
///
/// `app` is an axum `Router`, a `MethodRouter`, any `Clone` tower service of
/// `http::Request<`[`RequestBody`]`>`, or a make-service such as
/// `router.into_make_service_with_connect_info::<SocketAddr>()` ([`Servable`]).
///
/// The future resolves to an `io::Result<()>` for the shape of `axum::serve`'s; errors
/// accepting a connection are logged and waited out, not returned.
pub fn serve<A, M>(listener: TcpListener, app: A) -> Serve<A, M>
where
    A: Servable<M>,
{
    Serve::new(listener, app)
}
