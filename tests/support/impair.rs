//! Hurting a real Redis on purpose: pausing its process (SIGSTOP) and resuming
//! it, or slowing its answers behind a latency proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::send_signal;
use super::redis::RedisServer;

impl RedisServer {
    fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap()
            .as_ref()
            .expect("redis-server is running")
            .id()
    }

    /// SIGSTOP: the process stops answering but keeps its connections open.
    pub fn pause(&self) {
        send_signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        send_signal(self.pid(), "CONT");
    }
}

/// A TCP proxy on a free loopback port in front of `target`, that can delay every
/// answer coming back by a set latency: a slow network or a struggling Redis.
pub struct LatencyProxy {
    pub port: u16,
    latency_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    pub async fn start(target: u16) -> LatencyProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let latency_ms = Arc::new(AtomicU64::new(0));
        let latency = latency_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let latency = latency.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let delay = latency.load(Ordering::Relaxed);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        LatencyProxy {
            port,
            latency_ms,
            task,
        }
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy on a free loopback port in front of `target` for one kind of link
/// (a replica's replication stream): it can hold back what `target` sends, and cut
/// every connection without delivering what it held — a network that had not yet
/// carried the last writes when the server died.
pub struct LinkProxy {
    pub port: u16,
    held: tokio::sync::watch::Sender<bool>,
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl LinkProxy {
    pub async fn start(target: u16) -> LinkProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (held, _) = tokio::sync::watch::channel(false);
        let tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>> = Arc::default();
        let (hold, all) = (held.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let mut set = all.lock().unwrap();
                set.spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let hold = hold.clone();
                set.spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let _ = hold.subscribe().wait_for(|held| !held).await;
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        LinkProxy { port, held, tasks }
    }

    /// From now on, what the target sends is kept back.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Every connection closed, what was held never delivered; no new ones.
    pub fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A TCP proxy on a free loopback port in front of `target` that can lose one
/// answer: armed with some bytes, the next request that holds them is delivered,
/// the server's answer to it is read and thrown away, and that connection is
/// closed — a `COMMIT` that ran while the network failed on its way back.
pub struct LostAnswerProxy {
    pub port: u16,
    armed: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl LostAnswerProxy {
    pub async fn start(target: u16) -> LostAnswerProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>> = Arc::default();
        let (trigger, all) = (armed.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let trigger = trigger.clone();
                all.lock().unwrap().spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Set when this connection's next answer is to be lost.
                    let (lose, mut losing) = tokio::sync::watch::channel(false);
                    let upstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = client_read.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let hit = {
                                let mut armed = trigger.lock().unwrap();
                                let hit = armed.as_ref().is_some_and(|bytes| {
                                    buf[..n].windows(bytes.len()).any(|w| w == bytes.as_slice())
                                });
                                if hit {
                                    *armed = None;
                                }
                                hit
                            };
                            if hit {
                                lose.send_replace(true);
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let downstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = server_read.read(&mut buf).await {
                            if n == 0 || *losing.borrow_and_update() {
                                // The answer to the armed request: gone, and the
                                // connection with it.
                                break;
                            }
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    // Whichever side ends first ends the connection.
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        LostAnswerProxy { port, armed, tasks }
    }

    /// The next request holding `bytes` is delivered and its answer lost.
    pub fn lose_answer_to(&self, bytes: &str) {
        *self.armed.lock().unwrap() = Some(bytes.as_bytes().to_vec());
    }
}

impl Drop for LostAnswerProxy {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}
