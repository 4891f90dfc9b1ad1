//! A whole cluster of real processes: a redis-server, three replicas of the
//! built `storefront` binary sharing one SQLite file, and nginx rendered from
//! `deploy/nginx/storefront.conf.template`, everything on free loopback ports
//! under one temporary directory. Everything is killed on drop.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::browser::{Browser, Page};
use super::process::{free_port, send_signal, wait_until};
use super::redis::RedisServer;

/// The binary cargo built for these tests, or `STOREFRONT_BIN` (e.g. a release
/// build: `STOREFRONT_BIN=target/release/storefront cargo test --test cluster`).
pub fn storefront_binary() -> PathBuf {
    match std::env::var_os("STOREFRONT_BIN") {
        Some(path) => std::fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("STOREFRONT_BIN={}: {e}", path.to_string_lossy())),
        None => PathBuf::from(env!("CARGO_BIN_EXE_storefront")),
    }
}

/// How long a process may take to become ready (debug build, 2 busy cores).
const READY_LIMIT: Duration = Duration::from_secs(30);

/// How long a replica may take to exit after SIGTERM: its drain is bounded by
/// REQUEST_TIMEOUT (10 s) + 1 s.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

/// Fields are dropped in this order: nginx, the replicas, Redis, then the
/// directory with the database and the logs.
pub struct Cluster {
    nginx: Nginx,
    pub replicas: Vec<Replica>,
    pub redis: RedisServer,
    /// nginx's address: what a user's browser talks to.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Redis without persistence, three replicas, nginx in front.
    pub async fn start() -> Cluster {
        Self::start_with(RedisServer::start().await).await
    }

    /// Same, with Redis appending every write to its AOF (fsync always).
    pub async fn start_with_aof() -> Cluster {
        Self::start_with(RedisServer::start_with(true).await).await
    }

    /// Same, the replicas writing human-readable logs (`LOG_FORMAT=pretty`), as
    /// `scripts/cluster` runs them, instead of JSON lines.
    pub async fn start_with_pretty_logs() -> Cluster {
        Self::start_with_options(RedisServer::start().await, "pretty").await
    }

    async fn start_with(redis: RedisServer) -> Cluster {
        Self::start_with_options(redis, "json").await
    }

    async fn start_with_options(redis: RedisServer, log_format: &'static str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers drop root privileges (to `nobody`): let them in.
        set_mode(dir.path(), 0o755);
        let logs = dir.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        let database_url = format!("sqlite://{}/storefront.db", dir.path().display());

        // Migrate once, before any replica starts, as compose's one-shot service does.
        let migrate = Command::new(storefront_binary())
            .arg("migrate")
            .env_clear()
            .envs(base_env())
            .env("DATABASE_URL", &database_url)
            .stdout(log_file(&logs.join("migrate.log")))
            .stderr(log_file(&logs.join("migrate.log")))
            .status()
            .unwrap();
        assert!(
            migrate.success(),
            "storefront migrate failed: {}",
            read(&logs.join("migrate.log"))
        );

        let mut replicas: Vec<Replica> = (1..=3)
            .map(|i| Replica {
                name: format!("replica-{i}"),
                port: free_port(),
                log: logs.join(format!("replica-{i}.log")),
                database_url: database_url.clone(),
                redis_url: redis.url(),
                log_format,
                metrics_port: free_port(),
                child: None,
            })
            .collect();
        for replica in &mut replicas {
            replica.spawn();
        }
        for replica in &mut replicas {
            replica.wait_ready().await;
        }

        let nginx = Nginx::start(dir.path(), &replicas).await;
        Cluster {
            url: nginx.url(),
            nginx,
            replicas,
            redis,
            dir,
        }
    }

    /// A browser with an empty cookie jar, talking to nginx.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.url)
    }

    pub fn replica(&self, name: &str) -> &Replica {
        self.replicas
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no replica named {name:?}"))
    }

    pub fn replica_names(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.name.clone()).collect()
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("storefront.db")
    }

    pub fn nginx_error_log(&self) -> String {
        read(&self.nginx.prefix.join("logs/error.log"))
    }

    pub fn nginx_access_log(&self) -> String {
        read(&self.nginx.prefix.join("logs/access.log"))
    }

    /// The end of every log, for assertion messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for replica in &self.replicas {
            out += &format!(
                "--- {} log (tail)\n{}\n",
                replica.name,
                tail(&replica.log_text(), 15)
            );
        }
        out += &format!(
            "--- nginx error log\n{}\n",
            tail(&self.nginx_error_log(), 30)
        );
        out += &format!(
            "--- nginx access log (tail)\n{}\n",
            tail(&self.nginx_access_log(), 15)
        );
        out
    }

    /// Polls nginx until `name` answers through it again (nginx skips a replica
    /// for `fail_timeout` after a failed attempt).
    pub async fn wait_until_nginx_routes_to(&self, name: &str) {
        let client = &plain_client();
        let url = &format!("{}/healthz", self.url);
        wait_until(
            &format!("nginx routing to {name}"),
            READY_LIMIT,
            move || async move {
                match client.get(url).send().await {
                    Ok(r) => r.headers().get("x-served-by").is_some_and(|v| v == name),
                    Err(_) => false,
                }
            },
        )
        .await;
    }

    /// Polls every replica's `/readyz` until each has answered 200 `in_a_row`
    /// times running: each request may use another connection of its Redis
    /// pool, so several answers in a row mean the whole pool is back.
    pub async fn wait_until_every_replica_is_ready(&self, in_a_row: u32) {
        let client = &plain_client();
        for replica in &self.replicas {
            let url = &format!("{}/readyz", replica.url());
            let streak = &std::sync::atomic::AtomicU32::new(0);
            wait_until(&format!("{} ready", replica.name), READY_LIMIT, move || async move {
                use std::sync::atomic::Ordering::SeqCst;
                let ok = matches!(client.get(url).send().await, Ok(r) if r.status() == StatusCode::OK);
                if ok {
                    streak.fetch_add(1, SeqCst) + 1 >= in_a_row
                } else {
                    streak.store(0, SeqCst);
                    false
                }
            })
            .await;
        }
    }
}

/// One replica process. It keeps its port and log file across restarts.
pub struct Replica {
    pub name: String,
    pub port: u16,
    pub log: PathBuf,
    database_url: String,
    redis_url: String,
    log_format: &'static str,
    /// Where the replica serves `/metrics` (`METRICS_ADDR`), apart from the shop.
    pub metrics_port: u16,
    child: Option<Child>,
}

impl Replica {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("replica is running").id()
    }

    /// Starts the process (the caller then waits for [`Replica::wait_ready`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let child = Command::new(storefront_binary())
            .arg("serve")
            // Only what we set: a developer's own settings must not leak in.
            .env_clear()
            .envs(base_env())
            .env("BIND", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("REPLICA_NAME", &self.name)
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("COOKIE_SECURE", "false")
            .env("LOG_FORMAT", self.log_format)
            .env("METRICS_ADDR", format!("127.0.0.1:{}", self.metrics_port))
            // static/ is served from the working directory.
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(log_file(&self.log))
            .stderr(log_file(&self.log))
            .spawn()
            .expect("the storefront binary starts");
        self.child = Some(child);
    }

    /// Polls `/readyz` until it answers 200 (Redis and SQLite reachable).
    pub async fn wait_ready(&mut self) {
        let client = plain_client();
        let url = format!("{}/readyz", self.url());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // The error, not the backtrace printed after it.
                let log = self.log_text();
                let error = log.split("Stack backtrace:").next().unwrap_or_default();
                panic!(
                    "{} exited during start-up ({status}):\n{}",
                    self.name,
                    tail(error, 30)
                );
            }
            if let Ok(response) = client.get(&url).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                start.elapsed() < READY_LIMIT,
                "{} not ready after {READY_LIMIT:?}:\n{}",
                self.name,
                tail(&self.log_text(), 30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the process to exit; returns its exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        send_signal(self.pid(), "TERM");
        self.wait_exit().await
    }

    /// `kill -9`: no chance to clean up.
    pub async fn kill(&mut self) -> ExitStatus {
        self.child.as_mut().unwrap().kill().unwrap();
        self.wait_exit().await
    }

    /// Waits for the process to exit (after a signal); returns its exit status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < EXIT_LIMIT,
                "{} still running {EXIT_LIMIT:?} after the signal",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }

    /// The replica's JSON log lines.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx from the project's template, with its own prefix directory.
struct Nginx {
    child: Option<Child>,
    port: u16,
    prefix: PathBuf,
}

impl Nginx {
    async fn start(dir: &Path, replicas: &[Replica]) -> Nginx {
        let prefix = dir.join("nginx");
        fs::create_dir_all(prefix.join("logs")).unwrap();
        set_mode(&prefix, 0o755);
        let port = free_port();
        let upstreams = replicas
            .iter()
            .map(|r| format!("server 127.0.0.1:{} max_fails=1 fail_timeout=2s;", r.port))
            .collect::<Vec<_>>()
            .join("\n        ");
        let config = render_nginx_template(&HashMap::from([
            ("LB_LISTEN", format!("127.0.0.1:{port}")),
            ("LB_UPSTREAM_SERVERS", upstreams),
            ("LB_ACCESS_LOG", "logs/access.log".to_owned()),
            ("LB_ERROR_LOG", "logs/error.log".to_owned()),
        ]));
        let conf = prefix.join("nginx.conf");
        fs::write(&conf, config).unwrap();

        let mut args: Vec<String> = vec![
            "-p".into(),
            format!("{}/", prefix.display()),
            "-c".into(),
            conf.display().to_string(),
            "-e".into(),
            "logs/error.log".into(),
        ];
        let test = Command::new(nginx_binary())
            .args(&args)
            .arg("-t")
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "nginx rejects the rendered template:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        args.extend(["-g".into(), "daemon off;".into()]);
        let child = Command::new(nginx_binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&prefix.join("logs/stderr.log")))
            .spawn()
            .expect("nginx must be installed (scripts/test installs it)");
        let mut nginx = Nginx {
            child: Some(child),
            port,
            prefix,
        };
        let client = plain_client();
        let url = format!("{}/healthz", nginx.url());
        let start = Instant::now();
        loop {
            if let Some(status) = nginx.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}):\n{}",
                    read(&nginx.prefix.join("logs/error.log"))
                );
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == StatusCode::OK {
                    break;
                }
            }
            assert!(start.elapsed() < READY_LIMIT, "nginx not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM: the master stops its workers and exits. SIGKILL would leave
        // the workers behind, still holding the port.
        send_signal(child.id(), "TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The template with every `${NAME}` placeholder filled in, as envsubst
/// (scripts/cluster) and the nginx image's entrypoint (compose) do it.
pub fn render_nginx_template(values: &HashMap<&str, String>) -> String {
    let template_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/storefront.conf.template");
    let mut config = read(&template_path);
    assert!(!config.is_empty(), "{} is missing", template_path.display());
    for (name, value) in values {
        let placeholder = format!("${{{name}}}");
        assert!(
            config.contains(&placeholder),
            "template lacks {placeholder}"
        );
        config = config.replace(&placeholder, value);
    }
    assert!(
        !config.contains("${LB_"),
        "a placeholder was left unfilled in the nginx template"
    );
    config
}

fn nginx_binary() -> &'static str {
    // nginx lives in /usr/sbin, which a non-root PATH may lack.
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// The environment every storefront process gets.
fn base_env() -> Vec<(String, String)> {
    let mut env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
    for name in ["PATH", "HOME", "RUST_BACKTRACE"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    env
}

/// A client without cookies for health checks.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sends a request and reads the whole response; any failure becomes an `Err`
/// (where [`Browser::get`] would panic), so callers can count failures.
pub async fn fetch(request: reqwest::RequestBuilder) -> Result<Page, String> {
    let response = request.send().await.map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(|e| format!("{e:#}"))?;
    Ok(Page {
        status,
        headers,
        body,
    })
}

/// The replica name in the page footer.
pub fn footer_replica(page: &Page) -> Option<String> {
    between(&page.body, "Served by <strong>", "<")
}

/// A row of the session inspector (`/session`), e.g. "Served now by".
pub fn session_row(page: &Page, label: &str) -> Option<String> {
    between(
        &page.body,
        &format!("<th scope=\"row\">{label}</th><td><code>"),
        "<",
    )
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(text[from..to].to_owned())
}

fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}
