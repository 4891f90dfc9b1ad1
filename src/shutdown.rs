//! Graceful shutdown that loses no request nginx has already sent.
//!
//! axum's `with_graceful_shutdown` does two things at the same instant: it closes
//! the listening socket and tells every open connection to finish. Both can drop
//! a request that nginx has already sent, with no answer at all:
//! * connections the kernel has accepted but the app has not taken from the
//!   socket's queue yet are reset when the socket closes;
//! * a connection taken a moment ago whose request hyper has not read yet counts
//!   as idle, and idle connections are closed at once.
//!
//! nginx cannot tell such a request from one a replica crashed on, so it does not
//! retry a POST (add to cart, login): the user gets a 502. Here shutdown goes in
//! order instead: take every queued connection and close the socket (a new
//! connection is then refused, which nginx safely retries on another replica),
//! wait until every connection taken has started reading its request, and only
//! then tell the connections to finish. axum stops calling `accept` once told to
//! shut down, so the shutdown signal itself waits for all this ([`Settled`]).
//!
//! One race is left, and only a load balancer that stops sending first can close
//! it: a connection that completes its handshake in the microseconds between the
//! last look at the queue and the socket's close is reset by the kernel.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The longest wait for the socket to close and for the connections taken to read
/// their first bytes. Both take microseconds; this bounds a client that connects
/// and never sends.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// A listener that, once `stopping` turns true, hands out the connections still
/// queued in the kernel, then closes its socket and accepts nothing more. It
/// counts the connections it handed out that have not read anything yet.
pub struct DrainingListener {
    listener: Option<TcpListener>,
    address: SocketAddr,
    stopping: watch::Receiver<bool>,
    closed: watch::Sender<bool>,
    unread: Arc<AtomicUsize>,
}

/// Tells when the listener has closed its socket and every connection it handed
/// out has started reading its request: from then on, no request can be lost.
pub struct Settled {
    closed: watch::Receiver<bool>,
    unread: Arc<AtomicUsize>,
}

impl Settled {
    /// Waits for both, or `limit`.
    pub async fn wait(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let closed = self.closed.wait_for(|closed| *closed);
        if tokio::time::timeout_at(deadline.into(), closed)
            .await
            .is_err()
        {
            tracing::warn!("the listening socket did not close in time");
        }
        while self.unread.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl DrainingListener {
    pub fn new(
        listener: TcpListener,
        stopping: watch::Receiver<bool>,
    ) -> io::Result<(Self, Settled)> {
        let unread = Arc::new(AtomicUsize::new(0));
        let (closed, closed_rx) = watch::channel(false);
        let draining = DrainingListener {
            address: listener.local_addr()?,
            listener: Some(listener),
            stopping,
            closed,
            unread: unread.clone(),
        };
        let settled = Settled {
            closed: closed_rx,
            unread,
        };
        Ok((draining, settled))
    }

    fn hand_out(&self, (stream, address): (TcpStream, SocketAddr)) -> (Connection, SocketAddr) {
        self.unread.fetch_add(1, Ordering::AcqRel);
        let connection = Connection {
            stream,
            unread: Some(self.unread.clone()),
        };
        (connection, address)
    }
}

impl axum::serve::Listener for DrainingListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            let Some(listener) = &self.listener else {
                // Closed. axum's own shutdown signal ends its accept loop.
                return std::future::pending().await;
            };
            if *self.stopping.borrow() {
                // Take what is already queued (no waiting), then close the socket.
                match std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await {
                    Poll::Ready(Ok(connection)) => return self.hand_out(connection),
                    _ => {
                        self.listener = None;
                        let _ = self.closed.send(true);
                        tracing::info!("no longer accepting connections");
                        continue;
                    }
                }
            }
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => return self.hand_out(connection),
                    Err(err) => {
                        // Too many open files and the like: as axum does, wait a little.
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = self.stopping.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.address)
    }
}

/// A TCP connection that reports its first read (or its end) to the listener's count.
pub struct Connection {
    stream: TcpStream,
    unread: Option<Arc<AtomicUsize>>,
}

impl Connection {
    fn mark_read(&mut self) {
        if let Some(unread) = self.unread.take() {
            unread.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.mark_read();
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if polled.is_ready() {
            self.mark_read();
        }
        polled
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
}
