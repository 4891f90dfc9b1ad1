//! Test worlds: a real redis-server on a free loopback port, the real application
//! started in-process on port 0 with its own SQLite file, and HTTP clients with
//! their own cookie jars.
#![allow(dead_code)] // each test binary uses a different part of this file

mod postgres;
pub use postgres::PostgresServer;

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, HashesInterface, KeysInterface, Pool};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use storefront::config::Config;
use storefront::Application;

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

/// A redis-server of our own, on loopback, stopped when dropped.
pub struct RedisServer {
    child: std::sync::Mutex<Option<Child>>,
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
        storefront::connect_redis(&self.url(), Duration::from_secs(2))
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal with kill(1): the standard library only has SIGKILL.
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// A TCP proxy on a free loopback port in front of `target`, that can delay every
/// answer coming back by a set latency: a slow network or a struggling Redis.
pub struct LatencyProxy {
    pub port: u16,
    latency_ms: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    pub async fn start(target: u16) -> LatencyProxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        self.latency_ms.store(
            latency.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Memory,
}

/// Where users and products live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A fresh SQLite file in the test's own directory.
    Sqlite,
    /// A fresh database on this test binary's Postgres server (tests/common/postgres.rs).
    Postgres,
}

impl Database {
    /// A new, empty database of this kind; the URL, given the test's directory.
    pub async fn fresh_url(self, dir: &Path) -> String {
        match self {
            Database::Sqlite => sqlite_url(dir),
            Database::Postgres => PostgresServer::shared().await.fresh_database().await,
        }
    }
}

/// One running application and what it needs.
pub struct TestApp {
    pub address: String,
    pub redis: Option<Pool>,
    pub redis_server: Option<Arc<RedisServer>>,
    pub db_dir: Arc<tempfile::TempDir>,
    pub database_url: String,
    pub state: storefront::state::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let redis_server = match backend {
            Backend::Redis => Some(Arc::new(RedisServer::start().await)),
            Backend::Memory => None,
        };
        let db_dir = Arc::new(tempfile::tempdir().unwrap());
        Self::spawn_sharing(redis_server, db_dir, "test-replica", adjust).await
    }

    /// A fresh world whose users and products live in `database`.
    pub async fn spawn_on(backend: Backend, database: Database) -> TestApp {
        let (redis_server, db_dir) = tokio::join!(
            async {
                match backend {
                    Backend::Redis => Some(Arc::new(RedisServer::start().await)),
                    Backend::Memory => None,
                }
            },
            async { Arc::new(tempfile::tempdir().unwrap()) }
        );
        let database_url = database.fresh_url(db_dir.path()).await;
        Self::spawn_full(redis_server, db_dir, database_url, "test-replica", |_| {}).await
    }

    /// Another instance ("replica") sharing this one's Redis and database.
    pub async fn sibling(&self, name: &str) -> TestApp {
        Self::spawn_full(
            self.redis_server.clone(),
            self.db_dir.clone(),
            self.database_url.clone(),
            name,
            |_| {},
        )
        .await
    }

    pub async fn spawn_sharing(
        redis_server: Option<Arc<RedisServer>>,
        db_dir: Arc<tempfile::TempDir>,
        replica: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let database_url = sqlite_url(db_dir.path());
        Self::spawn_full(redis_server, db_dir, database_url, replica, adjust).await
    }

    pub async fn spawn_full(
        redis_server: Option<Arc<RedisServer>>,
        db_dir: Arc<tempfile::TempDir>,
        database_url: String,
        replica: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = Config::defaults();
        config.port = 0;
        config.bind = "127.0.0.1".parse().unwrap();
        config.database_url = database_url.clone();
        config.redis_url = redis_server.as_ref().map(|r| r.url());
        config.replica_name = Some(replica.to_owned());
        config.trusted_proxies = Vec::new();
        adjust(&mut config);

        let app = Application::build(config)
            .await
            .expect("application starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let redis = match &redis_server {
            Some(server) => Some(server.client().await),
            None => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            redis,
            redis_server,
            db_dir,
            database_url,
            state,
            stop: Some(stop),
        }
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.address)
    }

    pub fn redis(&self) -> Option<&Pool> {
        self.redis.as_ref()
    }

    /// Every key in the test's Redis.
    pub async fn redis_keys(&self) -> Vec<String> {
        let Some(redis) = self.redis() else {
            return Vec::new();
        };
        let mut keys: Vec<String> = redis
            .next()
            .custom(fred::cmd!("KEYS"), vec!["*"])
            .await
            .unwrap();
        keys.sort();
        keys
    }

    pub async fn redis_hash(&self, key: &str) -> std::collections::HashMap<String, u32> {
        self.redis().unwrap().hgetall(key).await.unwrap()
    }

    pub async fn redis_ttl(&self, key: &str) -> i64 {
        self.redis().unwrap().ttl(key).await.unwrap()
    }

    /// True when `sid` names a live session in Redis: not gone, and not the
    /// short-lived tombstone an ended session leaves (`ended:…`).
    pub async fn session_is_live(&self, sid: &str) -> bool {
        let value: Option<Vec<u8>> = self.redis().unwrap().get(sid).await.unwrap();
        value.is_some_and(|v| !v.starts_with(b"ended:"))
    }

    pub async fn redis_exists(&self, key: &str) -> bool {
        self.redis().unwrap().exists::<u32, _>(key).await.unwrap() == 1
    }

    /// How many times Redis has run `command` (from INFO commandstats).
    pub async fn redis_calls(&self, command: &str) -> u64 {
        let info: String = self
            .redis()
            .unwrap()
            .info(Some(fred::types::InfoKind::CommandStats))
            .await
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    pub async fn user_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.state.db)
            .await
            .unwrap()
    }

    pub async fn user_exists(&self, name: &str) -> bool {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username = $1")
            .bind(name)
            .fetch_one(&self.state.db)
            .await
            .unwrap();
        n == 1
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/storefront.db", dir.display())
}

/// A client with its own cookie jar that does not follow redirects.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub jar: Arc<Jar>,
    client: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn served_by(&self) -> &str {
        self.headers
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The cart badge's number in the header.
    pub fn cart_badge(&self) -> u32 {
        let start = self
            .body
            .find("class=\"count\">")
            .expect("cart badge on the page")
            + "class=\"count\">".len();
        let end = self.body[start..].find('<').unwrap() + start;
        self.body[start..end].parse().unwrap()
    }

    /// The logged-in user's name from the header, if any.
    pub fn logged_in_as(&self) -> Option<String> {
        let start = self.body.find("Logged in as <strong>")? + "Logged in as <strong>".len();
        let end = self.body[start..].find('<')? + start;
        Some(self.body[start..end].to_owned())
    }

    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "expected a redirect to {to}, got {self:#?}"
        );
        assert_eq!(self.location(), Some(to));
    }

    pub fn assert_contains(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "expected {text:?} in the page:\n{}",
            self.body
        );
    }

    /// Cart lines as (product name, quantity), from the cart page.
    pub fn cart_lines(&self) -> Vec<(String, u32)> {
        let mut lines = Vec::new();
        for row in self.body.split("<tr>").skip(2) {
            let link = row.find("<a href=\"/products/").unwrap();
            let name_start = row[link..].find("\">").unwrap() + link + 2;
            let name_end = row[name_start..].find("</a>").unwrap() + name_start;
            let qty_marker = "name=\"quantity\" type=\"number\"";
            let q = row.find(qty_marker).unwrap();
            let value_start = row[q..].find("value=\"").unwrap() + q + 7;
            let value_end = row[value_start..].find('"').unwrap() + value_start;
            lines.push((
                row[name_start..name_end].to_owned(),
                row[value_start..value_end].parse().unwrap(),
            ));
        }
        lines
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser {
            base: base.to_owned(),
            jar,
            client,
        }
    }

    /// The same cookie jar, pointed at another address (another replica).
    pub fn at(&self, base: &str) -> Self {
        Browser {
            base: base.to_owned(),
            jar: self.jar.clone(),
            client: self.client.clone(),
        }
    }

    pub async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::read(
            self.client
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// The `sid` cookie's value, if the jar has one.
    pub fn sid(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("sid="))
            .map(str::to_owned)
    }

    /// Puts a `sid` cookie in the jar, as a browser replaying an old cookie would.
    pub fn set_sid(&self, value: &str) {
        let url = self.base.parse().unwrap();
        self.jar
            .add_cookie_str(&format!("sid={value}; Path=/"), &url);
    }

    pub async fn add_to_cart(&self, product_id: &str, quantity: &str) -> Page {
        self.post(
            "/cart/add",
            &[("product_id", product_id), ("quantity", quantity)],
        )
        .await
    }

    pub async fn log_in(&self, username: &str, password: &str) -> Page {
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    pub async fn register(&self, username: &str, password: &str) -> Page {
        self.post(
            "/register",
            &[
                ("username", username),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await
    }

    pub async fn log_out(&self) -> Page {
        self.post("/logout", &[]).await
    }
}

// ---- Races between a visitor's adds and their own login or logout (faults, redis_cluster).

/// Adds one Blue Teapot at a time with `racer` until two adds after `done` turned
/// true (paced, at most 60: below the cart's cap of 99 a line). Returns the adds
/// acknowledged (303) and refused (409, "nothing was changed"); anything else fails.
pub async fn add_until_just_after(racer: &Browser, done: &AtomicBool) -> (u32, u32) {
    let (mut acknowledged, mut refused, mut after) = (0u32, 0u32, 0u32);
    for _ in 0..60 {
        if after == 2 {
            break;
        }
        if done.load(Ordering::SeqCst) {
            after += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        let page = racer.add_to_cart("1", "1").await;
        match page.status {
            StatusCode::SEE_OTHER => acknowledged += 1,
            StatusCode::CONFLICT => {
                page.assert_contains("nothing was changed");
                refused += 1;
            }
            other => panic!("an add racing the visitor's own login or logout: {other} {page:?}"),
        }
    }
    (acknowledged, refused)
}

/// One visitor with an anonymous cart (one Blue Teapot, added on `visitor`'s
/// replica) logs in as `name` while the same cookie, in another client on
/// `other_replica`, keeps adding. Returns the adds acknowledged and refused.
pub async fn race_adds_against_login(
    visitor: Browser,
    other_replica: &str,
    name: &str,
    password: &str,
) -> (u32, u32) {
    let racer = Browser::new(other_replica);
    visitor.add_to_cart("1", "1").await.assert_redirect("/cart");
    racer.set_sid(&visitor.sid().unwrap());
    let logged_in = AtomicBool::new(false);
    let login = async {
        let page = visitor.log_in(name, password).await;
        logged_in.store(true, Ordering::SeqCst);
        page
    };
    let (login, counts) = tokio::join!(login, add_until_just_after(&racer, &logged_in));
    login.assert_redirect("/");
    counts
}

/// Runs the races five at a time: logins verify passwords on one core, and a
/// request queued behind twenty argon2 runs would meet the request timeout.
pub async fn in_batches<F: std::future::Future>(races: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut races = races.peekable();
    let mut outcomes = Vec::new();
    while races.peek().is_some() {
        let batch: Vec<F> = races.by_ref().take(5).collect();
        outcomes.extend(futures::future::join_all(batch).await);
    }
    outcomes
}

pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-pass-123";

/// Runs the same test body against Redis and against the in-memory dev store (users
/// in SQLite), and against Redis with users and products in Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        mod with_redis {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = TestApp::spawn(Backend::Redis).await;
                    $body
                }
            )*
        }
        mod in_memory {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = TestApp::spawn(Backend::Memory).await;
                    $body
                }
            )*
        }
        mod with_postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = TestApp::spawn_on(Backend::Redis, Database::Postgres).await;
                    $body
                }
            )*
        }
    };
}
