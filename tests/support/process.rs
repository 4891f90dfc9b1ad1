//! Processes of the tests' own on loopback: free ports, readiness polls, signals.

use std::net::TcpListener as StdListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// A port nobody listens on right now (the OS picks it; we let it go at once).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls until `ready` says yes, or panics after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !ready().await {
        assert!(start.elapsed() < limit, "{what} not ready after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a signal with kill(1): the standard library only has SIGKILL.
#[allow(dead_code)] // the in-process suites send no signals
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -s {name} {pid} failed");
}
