//! A real redis-server of the test's own, on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fred::prelude::Pool;

use super::api::connect_redis;
use super::process::{free_port, wait_until};

/// A redis-server of our own, on loopback, stopped when dropped.
pub struct RedisServer {
    /// The process while it runs (impair.rs signals it).
    pub(super) child: std::sync::Mutex<Option<Child>>,
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// With `aof`, every write is appended to a file, so a restart keeps everything.
    pub async fn start_with(aof: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = RedisServer {
            child: Default::default(),
            port: free_port(),
            dir,
            aof,
        };
        server.launch().await;
        server
    }

    async fn launch(&self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                // As in production: a full Redis refuses writes, never evicts sessions.
                "--maxmemory-policy",
                "noeviction",
            ])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        *self.child.lock().unwrap() = Some(child);
        let port = self.port;
        wait_until("redis-server", Duration::from_secs(10), || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs a command on this server with redis-cli (CONFIG SET and the like).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts the same server (same port, same data directory).
    pub async fn restart(&self) {
        self.stop();
        self.launch().await;
    }

    pub async fn client(&self) -> Pool {
        connect_redis(&self.url(), Duration::from_secs(2))
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
