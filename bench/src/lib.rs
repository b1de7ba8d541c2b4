//! Shared helpers of the benchmark binaries (issue 6): the servers' runtime setup.
//!
//! The binaries are `baseline` (axum `Sse` over `tokio::sync::broadcast`), `tower-sse-server`,
//! `floor` (raw epoll, no runtime: issue 15's floor), `loadgen` (the client) and `run` (the
//! orchestrator that writes `BENCHMARKS.md`).

use std::future::Future;

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads `ADDR` (default `127.0.0.1:3000`).
pub fn addr() -> String {
    std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
}

/// Runs `fut` on a tokio runtime with `WORKERS` worker threads (default 1).
pub fn run_server<F: Future<Output = std::io::Result<()>>>(fut: F) -> std::io::Result<()> {
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1usize);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Binds `ADDR` and prints `listening on http://ADDR`.
pub async fn listen() -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    Ok(listener)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
