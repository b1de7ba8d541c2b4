//! The accepted socket: its options set, and reset rather than closed when the shutdown
//! deadline cuts it off.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::connection::Activity;

/// An accepted TCP connection.
pub(super) struct ServeIo {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl ServeIo {
    /// Sets `TCP_NODELAY` and the send buffer on `stream`; a failure is logged, not fatal.
    pub(super) fn new(
        stream: TcpStream,
        nodelay: bool,
        send_buffer_size: Option<usize>,
        activity: Arc<Activity>,
    ) -> Self {
        if let Err(err) = stream.set_nodelay(nodelay) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        if let Some(size) = send_buffer_size
            && let Err(err) = SockRef::from(&stream).set_send_buffer_size(size)
        {
            tracing::debug!(%err, size, "cannot set the socket's send buffer size");
        }
        Self { stream, activity }
    }
}

impl Drop for ServeIo {
    fn drop(&mut self) {
        if self.activity.reset_on_close() {
            // A linger time of zero makes close() send a reset and free the send buffer now.
            let _ = SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ServeIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
