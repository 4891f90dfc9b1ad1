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
//! last look at the queue and the socket's close is reset by the kernel. That is
//! what the drain window before all this is for (`SHUTDOWN_DRAIN`, in lib.rs):
//! nginx keeps idle connections to the replicas (upstream keep-alive), and a
//! replica that closed one just as nginx sent a POST on it would cost a 502. So
//! first, for a few seconds, the replica still serves but answers every request
//! with `Connection: close` and fails `/readyz`: nginx retires each connection
//! after its response, and closes its idle ones itself (its upstream
//! `keepalive_timeout` is shorter than the window). Only then does the listener close.
//!
//! Each connection is also bounded in time (`Connection`): a client must finish
//! its request headers within `HEADER_READ_TIMEOUT`, and an idle keep-alive
//! connection is closed after `IDLE_TIMEOUT`, so slow or idle clients cannot pile up.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;

/// The longest wait for the socket to close and for the connections taken to read
/// their first bytes. Both take microseconds; this bounds a client that connects
/// and never sends.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// A listener that, once `stopping` turns true, hands out the connections still
/// queued in the kernel, then closes its socket and accepts nothing more. It
/// counts the connections it handed out that have not read anything yet.
pub struct DrainingListener {
    listener: Option<TcpListener>,
    /// Connections taken from the kernel's queue as the socket closed, not yet handed out.
    queued: VecDeque<(TcpStream, SocketAddr)>,
    address: SocketAddr,
    stopping: watch::Receiver<bool>,
    closed: watch::Sender<bool>,
    unread: Arc<AtomicUsize>,
    limits: ConnectionLimits,
}

/// How long a connection may take over its request headers, and stay idle.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Tells when the listener has closed its socket and handed out every connection
/// it took, and every one of those has started reading its request: from then
/// on, no request can be lost.
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
        limits: ConnectionLimits,
    ) -> io::Result<(Self, Settled)> {
        let unread = Arc::new(AtomicUsize::new(0));
        let (closed, closed_rx) = watch::channel(false);
        let draining = DrainingListener {
            address: listener.local_addr()?,
            listener: Some(listener),
            queued: VecDeque::new(),
            stopping,
            closed,
            unread: unread.clone(),
            limits,
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
            phase: Arc::new(ConnectionPhase::new()),
            limits: self.limits,
            timer: None,
        };
        (connection, address)
    }
}

impl axum::serve::Listener for DrainingListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            if let Some(connection) = self.queued.pop_front() {
                return self.hand_out(connection);
            }
            let Some(listener) = &self.listener else {
                // Closed, and every connection it took is handed out: only now may
                // the shutdown go on (`Settled`). axum's own shutdown signal then
                // ends its accept loop.
                let _ = self.closed.send(true);
                return std::future::pending().await;
            };
            if *self.stopping.borrow() {
                self.close();
                continue;
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

impl DrainingListener {
    /// Takes every connection queued in the kernel, then closes the socket (the
    /// connections taken are handed out by the next calls to `accept`).
    ///
    /// The queue is read with `accept` calls until the kernel says it is empty:
    /// tokio's own `poll_accept` would not do, as it trusts the readiness its
    /// reactor last saw, and on a busy machine connections that arrived since then
    /// would be reset by the close with their request already sent.
    fn close(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        match listener.into_std() {
            Ok(listener) => loop {
                match listener.accept() {
                    Ok((stream, address)) => {
                        let stream = stream
                            .set_nonblocking(true)
                            .and_then(|()| TcpStream::from_std(stream));
                        match stream {
                            Ok(stream) => self.queued.push_back((stream, address)),
                            Err(err) => {
                                tracing::warn!(error = %err, "a queued connection was lost")
                            }
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        if err.kind() != io::ErrorKind::WouldBlock {
                            tracing::warn!(error = %err, "taking the queued connections failed");
                        }
                        break;
                    }
                }
            },
            Err(err) => tracing::warn!(error = %err, "the listening socket could not be drained"),
        }
        // The listener was dropped above: its socket is closed.
        tracing::info!(
            queued = self.queued.len(),
            "no longer accepting connections"
        );
    }
}

/// A TCP connection that reports its first read (or its end) to the listener's
/// count, and closes itself when a client is too slow with its headers or idle too long.
pub struct Connection {
    stream: TcpStream,
    unread: Option<Arc<AtomicUsize>>,
    phase: Arc<ConnectionPhase>,
    limits: ConnectionLimits,
    /// Wakes the connection at its current deadline.
    timer: Option<Pin<Box<Sleep>>>,
}

/// Where a connection is in its request cycle, for its deadlines: reading a
/// request's head (deadline: `header_read` after it began), busy with a request
/// (no deadline here: `REQUEST_TIMEOUT` bounds handlers), or idle between requests
/// (deadline: `idle` after the last activity). Shared with the request's
/// middleware ([`Peer`]), which knows when a request starts and ends.
#[derive(Debug)]
pub struct ConnectionPhase {
    state: AtomicU8,
    since: Mutex<Instant>,
}

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

impl ConnectionPhase {
    fn new() -> Self {
        // A new connection must send its first request's head in time too.
        ConnectionPhase {
            state: AtomicU8::new(HEAD),
            since: Mutex::new(Instant::now()),
        }
    }

    fn set(&self, state: u8) {
        *self.since.lock().expect("phase lock") = Instant::now();
        self.state.store(state, Ordering::Release);
    }

    /// A request's head has been read: the handler runs.
    pub fn busy(&self) {
        self.set(BUSY);
    }

    /// The response is on its way: the connection waits for the next request.
    pub fn idle(&self) {
        self.set(IDLE);
    }

    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let since = *self.since.lock().expect("phase lock");
        match self.state.load(Ordering::Acquire) {
            HEAD => Some(since + limits.header_read),
            IDLE => Some(since + limits.idle),
            _ => None,
        }
    }
}

/// What the request's extensions know of its connection
/// (`axum::extract::ConnectInfo<Peer>`): the client's address, and its phase.
#[derive(Debug, Clone)]
pub struct Peer {
    pub address: SocketAddr,
    pub phase: Arc<ConnectionPhase>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, DrainingListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, DrainingListener>) -> Self {
        Peer {
            address: *stream.remote_addr(),
            phase: stream.io().phase.clone(),
        }
    }
}

impl Connection {
    fn mark_read(&mut self) {
        if let Some(unread) = self.unread.take() {
            unread.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// While a read waits: has the current deadline passed? Arms the timer if not.
    fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.phase.deadline(&self.limits) else {
            return false;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        std::future::Future::poll(timer.as_mut(), cx).is_ready()
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
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                self.mark_read();
                // The first bytes after an idle spell start the next request's head.
                if buf.filled().len() > before && self.phase.state.load(Ordering::Acquire) == IDLE {
                    self.phase.set(HEAD);
                }
            }
            Poll::Ready(Err(_)) => self.mark_read(),
            Poll::Pending => {
                if self.overdue(cx) {
                    self.mark_read();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client too slow or idle too long",
                    )));
                }
            }
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
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        // Writing a response out to a slow reader is activity, not idleness.
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0)
            && self.phase.state.load(Ordering::Acquire) == IDLE
        {
            self.phase.set(IDLE);
        }
        polled
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
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0)
            && self.phase.state.load(Ordering::Acquire) == IDLE
        {
            self.phase.set(IDLE);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use futures::FutureExt;
    use std::io::Read;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(flavor = "current_thread")]
    async fn closing_takes_every_connection_the_kernel_has_queued() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopping) = watch::channel(false);
        let limits = ConnectionLimits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(10),
        };
        let (mut draining, settled) = DrainingListener::new(listener, stopping, limits).unwrap();

        // Three connections the kernel completed and queued while this task never
        // yielded: tokio's reactor has not seen them.
        let mut clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        stop.send(true).unwrap();

        // Shutting down hands out all three and closes the socket, but says it is
        // closed only once all three are out: the shutdown that waits for it then
        // stops calling `accept`, and a connection left in the queue would be reset.
        let mut taken = Vec::new();
        for _ in 0..3 {
            assert!(!*settled.closed.borrow(), "closed with connections queued");
            let (connection, _) = draining
                .accept()
                .now_or_never()
                .expect("a queued connection is handed out at once");
            taken.push(connection);
        }
        let refused = std::net::TcpStream::connect(address);
        assert!(refused.is_err(), "the socket is closed: {refused:?}");
        assert!(draining.accept().now_or_never().is_none(), "only three");
        assert!(*settled.closed.borrow(), "closed once all are out");

        // Each of them still works: none was reset by the close.
        for (connection, client) in taken.iter_mut().zip(&mut clients) {
            connection.write_all(b"ok").await.unwrap();
            let mut answer = [0u8; 2];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"ok");
        }
    }
}
