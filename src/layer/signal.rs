/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM, which is
/// what systemd, Docker and Kubernetes send. Pass it to
/// [`SseLayer::shutdown_on`](crate::SseLayer::shutdown_on). Feature `signal` (on by default),
/// which turns on tokio's `signal` feature; without it, pass any future of your own.
///
/// ```no_run
/// # async fn run(app: axum::Router, listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let sse = tower_sse::SseLayer::new();
/// axum::serve(listener, app.layer(sse.clone()))
///     .with_graceful_shutdown(sse.shutdown_on(tower_sse::shutdown_signal()))
///     .await
/// # }
/// ```
///
/// A signal whose handler cannot be installed is left out (logged at `warn` level) rather
/// than taken as a request to stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    futures_util::future::select(std::pin::pin!(ctrl_c), std::pin::pin!(terminate)).await;
}
