//! Helpers shared by the integration tests. Each test file that needs them declares
//! `mod support;`.
#![allow(dead_code)]

pub mod client;
pub mod hub;
pub mod nginx;
pub mod redis_server;
pub mod whatwg;

/// Whether the servers of these tests take `tower_sse::serve`'s HTTP/1 fast path: yes, as by
/// default, unless `HTTP1_FAST_PATH=0` (`.ci/run` runs the suites over real sockets both ways).
pub fn http1_fast_path() -> bool {
    std::env::var("HTTP1_FAST_PATH").map_or(true, |v| v.trim() != "0")
}

/// `tower_sse::serve(listener, app)`, with the fast path as [`http1_fast_path`] says.
#[cfg(feature = "serve")]
pub fn serve<A, M>(listener: tokio::net::TcpListener, app: A) -> tower_sse::serve::Serve<A, M>
where
    A: tower_sse::serve::Servable<M>,
{
    tower_sse::serve(listener, app).http1_fast_path(http1_fast_path())
}

/// Sends `head` to `addr` `piece` bytes at a time, one piece per `pace`, then `a` bytes the
/// same way for ever (a head that never ends), until the server closes the connection (or a
/// write fails, as it does once the server has reset it): how long after the first byte it
/// did.
pub async fn head_cut_off_after(
    addr: std::net::SocketAddr,
    head: &[u8],
    piece: usize,
    pace: std::time::Duration,
) -> std::time::Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let start = tokio::time::Instant::now();
    let mut bytes = head.iter().copied().chain(std::iter::repeat(b'a'));
    let send = async {
        loop {
            let chunk: Vec<u8> = bytes.by_ref().take(piece).collect();
            if write.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(pace).await;
        }
    };
    let closed = async {
        let mut buf = [0; 1024];
        while let Ok(n) = read.read(&mut buf).await
            && n > 0
        {}
    };
    tokio::select! {
        () = send => {}
        () = closed => {}
    }
    start.elapsed()
}
