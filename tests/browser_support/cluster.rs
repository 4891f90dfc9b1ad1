//! A small cluster, all on 127.0.0.1 free ports: one redis-server, three
//! `storefront` processes (the real binary, sharing one SQLite file and the
//! Redis), and nginx in front, configured from deploy/nginx/storefront.conf.template
//! exactly as scripts/cluster renders it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, sqlite_url, RedisServer};

const READY_LIMIT: Duration = Duration::from_secs(30);

pub struct Cluster {
    /// nginx's address: what the browser opens.
    pub url: String,
    pub replica_names: Vec<String>,
    // Dropped in this order: the load balancer, the replicas, Redis, the files.
    _nginx: Process,
    _replicas: Vec<Process>,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

/// A child process, killed (with its process group) when dropped.
struct Process {
    child: Child,
    group: bool,
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.group {
            // nginx: the master and its workers.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Cluster {
    pub async fn start(replicas: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers run as an unprivileged user and must reach their temp dirs.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let redis = RedisServer::start().await;
        let database_url = sqlite_url(dir.path());

        // Like the compose file's one-shot `migrate` service: the schema exists
        // before any replica starts, so they do not race to create it.
        let migrate = Command::new(env!("CARGO_BIN_EXE_storefront"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("running storefront migrate");
        assert!(
            migrate.status.success(),
            "storefront migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );

        let mut processes = Vec::new();
        let mut names = Vec::new();
        let mut upstreams = Vec::new();
        for i in 1..=replicas {
            let name = format!("replica-{i}");
            let port = free_port();
            let log = dir.path().join(format!("{name}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_storefront"))
                .arg("serve")
                .env_clear()
                .env("PORT", port.to_string())
                .env("BIND", "127.0.0.1")
                .env("DATABASE_URL", &database_url)
                .env("REDIS_URL", redis.url())
                .env("REPLICA_NAME", &name)
                .env("TRUSTED_PROXIES", "127.0.0.1")
                .env("RUST_LOG", "warn")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting a storefront replica");
            let mut process = Process {
                child,
                group: false,
            };
            wait_ready(
                &name,
                &mut process.child,
                &format!("http://127.0.0.1:{port}/readyz"),
                &log,
            )
            .await;
            processes.push(process);
            names.push(name);
            upstreams.push(format!(
                "server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;"
            ));
        }

        let lb_port = free_port();
        let prefix = dir.path().join("nginx");
        fs::create_dir_all(prefix.join("logs")).unwrap();
        let conf = prefix.join("nginx.conf");
        fs::write(
            &conf,
            render_nginx_conf(&format!("127.0.0.1:{lb_port}"), &upstreams),
        )
        .unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .arg("-c")
            .arg(&conf)
            .args(["-e", "logs/error.log", "-g", "daemon off;"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (scripts/test installs it)");
        let mut nginx = Process { child, group: true };
        let url = format!("http://127.0.0.1:{lb_port}");
        wait_ready(
            "nginx",
            &mut nginx.child,
            &format!("{url}/healthz"),
            &prefix.join("logs/error.log"),
        )
        .await;

        Cluster {
            url,
            replica_names: names,
            _nginx: nginx,
            _replicas: processes,
            _redis: redis,
            _dir: dir,
        }
    }
}

/// The deploy template with its four placeholders filled in (what `envsubst`
/// does in scripts/cluster and the nginx image does in docker-compose).
pub fn render_nginx_conf(listen: &str, upstream_servers: &[String]) -> String {
    let template = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx/storefront.conf.template"
    ))
    .expect("deploy/nginx/storefront.conf.template");
    let rendered = template
        .replace("${LB_LISTEN}", listen)
        .replace(
            "${LB_UPSTREAM_SERVERS}",
            &upstream_servers.join("\n        "),
        )
        .replace("${LB_ACCESS_LOG}", "logs/access.log")
        .replace("${LB_ERROR_LOG}", "logs/error.log");
    assert!(
        !rendered.contains("${LB_"),
        "the template has a placeholder this harness does not know"
    );
    rendered
}

fn nginx_binary() -> PathBuf {
    // Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.exists() {
        sbin.to_owned()
    } else {
        PathBuf::from("nginx")
    }
}

/// Polls `url` until it answers 200; fails early, with the log, if the process exits.
async fn wait_ready(what: &str, child: &mut Child, url: &str, log: &Path) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}) before it was ready:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            start.elapsed() < READY_LIMIT,
            "{what} not ready at {url} after {READY_LIMIT:?}:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
