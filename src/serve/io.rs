//! The accepted socket: its options set, and reset rather than closed when the shutdown
//! deadline cuts it off.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::connection::Activity;

/// An accepted TCP connection.
pub(super) struct ServeIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Bytes already read off the socket (by the fast path, handing the connection to hyper),
    /// read again before the socket's. Boxed: every stream the fast path writes holds this
    /// struct, and only a connection handed over uses it.
    read: Option<Box<Bytes>>,
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
            && let Err(err) = SockRef::from(&stream).set_send_buffer_size(kernel_request(size))
        {
            tracing::debug!(%err, size, "cannot set the socket's send buffer size");
        }
        Self {
            stream,
            activity,
            read: None,
        }
    }

    /// The connection, with `read` (bytes read off it) to be read again first.
    pub(super) fn with_read(mut self, read: Vec<u8>) -> Self {
        self.read = (!read.is_empty()).then(|| Box::new(Bytes::from(read)));
        self
    }
}

/// The value to ask of `setsockopt(SO_SNDBUF)` for a send buffer of `size` bytes: Linux
/// doubles what it is given (the other half is for its bookkeeping), so it is asked for half,
/// and the socket then holds at most `size` bytes of kernel memory.
fn kernel_request(size: usize) -> usize {
    if cfg!(target_os = "linux") {
        size.div_ceil(2)
    } else {
        size
    }
}

impl ServeIo {
    /// Ready once the socket has something to read (or has closed).
    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_read_ready(cx)
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
        if let Some(read) = &mut self.read {
            let n = buf.remaining().min(read.len());
            buf.put_slice(&read[..n]);
            read.advance(n);
            if read.is_empty() {
                self.read = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl ServeIo {
    /// Tells the layer's write-timeout watchdog whether the socket took bytes: the server's
    /// buffers keep polling a stream's body long after the socket stopped taking any, so the
    /// body alone would see a stalled client late.
    fn note(&self, written: &Poll<io::Result<usize>>) {
        match written {
            Poll::Pending => self.activity.stalled.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.stalled.wrote(),
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncWrite for ServeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note(&written);
        written
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
