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
//! give the connections taken last a moment to read their requests, and only
//! then tell the connections to finish.

use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long connections taken just before the socket closed get to read their
/// request before they count as idle. Reading takes microseconds; this is ample.
pub const SETTLE: Duration = Duration::from_millis(500);

/// A listener that, once `stopping` turns true, hands out the connections still
/// queued in the kernel, then closes its socket and accepts nothing more.
pub struct DrainingListener {
    listener: Option<TcpListener>,
    address: SocketAddr,
    stopping: watch::Receiver<bool>,
}

impl DrainingListener {
    pub fn new(listener: TcpListener, stopping: watch::Receiver<bool>) -> io::Result<Self> {
        Ok(DrainingListener {
            address: listener.local_addr()?,
            listener: Some(listener),
            stopping,
        })
    }
}

impl axum::serve::Listener for DrainingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some(listener) = &self.listener else {
                // Closed. axum's own shutdown signal ends its accept loop.
                return std::future::pending().await;
            };
            if *self.stopping.borrow() {
                // Take what is already queued (no waiting), then close the socket.
                match std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await {
                    Poll::Ready(Ok(connection)) => return connection,
                    _ => {
                        self.listener = None;
                        tracing::info!("no longer accepting connections");
                        continue;
                    }
                }
            }
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => return connection,
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
