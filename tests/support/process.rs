//! Processes of the tests' own on loopback: free ports, readiness polls, signals.

use std::net::TcpListener as StdListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// A port nobody uses right now, for a server the test starts next.
///
/// Taken below the kernel's range of ephemeral ports (`ip_local_port_range`,
/// 32768–60999 by default), not from it as binding port 0 would: a port in that
/// range can be taken by any outgoing connection (another test's client, a
/// replica's connection to Redis) between this call and the server's own bind,
/// and the server then fails to start. Below the range only a listener can take
/// it, and each port is handed out once per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static RANGE: OnceLock<(u32, u32)> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, size) = *RANGE.get_or_init(|| {
        let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32768);
        // 12,000 ports ending 10,000 below the range: a Redis Cluster node's bus
        // (its port + 10,000) stays below it too.
        let high = ephemeral.saturating_sub(10_000).max(2048);
        let low = high.saturating_sub(12_000).max(1024);
        // Each test process starts somewhere else in the range.
        NEXT.store(rand::random::<u32>() % 4096, Ordering::Relaxed);
        (low, high - low)
    });
    for _ in 0..size {
        let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % size;
        let port = u16::try_from(port).expect("a port below 65536");
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every port below the range in use (never, in practice): the kernel's pick.
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
