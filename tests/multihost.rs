//! `scripts/hosts`, for real: every part of the shop on its own "host" (a Linux
//! network namespace on a private bridge the script creates), a shopper's journey
//! through nginx across the replicas, one replica host and then the Redis primary
//! host killed, and the script's stop leaving no namespace, veth, bridge, process
//! or lock file behind.
//!
//! The test stops the script with SIGTERM (what `kill` sends), not SIGINT: a test
//! run started in the background by a script (`scripts/test &`, nohup, CI) starts
//! every process with SIGINT ignored, and a non-interactive bash cannot trap a
//! signal it was started with ignored. The script takes Ctrl-C (SIGINT), SIGTERM
//! and SIGHUP the same way out (one handler), so this also covers Ctrl-C from a
//! terminal.
//!
//! The test picks its own subnet (10.77.N.0/24), namespace prefix and run directory,
//! so it cannot clash with a developer's `scripts/hosts` run. It needs root (as
//! `ip netns` does); the tools come from Debian's packages (`scripts/hosts` installs
//! what is missing through scripts/lib/packages.sh).

// The shared test support (tests/support/), the parts this suite uses; an
// `allow(dead_code)` marks a module it uses only some of.
mod support {
    #[allow(dead_code)]
    pub mod api;
    #[allow(dead_code)]
    pub mod browser;
    #[allow(dead_code)]
    pub mod process;
}

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use support::api::{DEMO_PASSWORD, DEMO_USER};
use support::browser::{Browser, Page};
use support::process::send_signal;

/// Start-up of ten hosts (initdb, Redis, sentinels agreeing, three debug replicas).
const READY_LIMIT: Duration = Duration::from_secs(90);
/// How long the shop may serve its degraded/503 pages after the primary dies
/// (`down-after-milliseconds 1000` + the sentinels' election + the replicas reconnecting).
const FAILOVER_LIMIT: Duration = Duration::from_secs(20);
/// SIGTERM to a clean exit (nginx, replicas draining, Postgres, Redis, namespaces).
const EXIT_LIMIT: Duration = Duration::from_secs(40);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn storefront_binary() -> PathBuf {
    match std::env::var_os("STOREFRONT_BIN") {
        Some(path) => std::fs::canonicalize(path).unwrap(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_storefront")),
    }
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Names of network namespaces / links that start with `prefix-`.
fn namespaces(prefix: &str) -> Vec<String> {
    output("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

fn links(prefix: &str) -> Vec<String> {
    output("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

/// Every process in the script's namespaces (pids).
fn host_processes(prefix: &str) -> Vec<u32> {
    namespaces(prefix)
        .iter()
        .flat_map(|ns| {
            output("ip", &["netns", "pids", ns])
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Still running (a zombie waiting for its reaper has exited).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// The lock file of a `scripts/hosts` run with this prefix (the script's `LOCK_FILE`).
fn lock_file(prefix: &str) -> PathBuf {
    let dir = if Path::new("/run/lock").is_dir() {
        "/run/lock"
    } else {
        "/run"
    };
    Path::new(dir).join(format!("storefront-hosts-{prefix}.lock"))
}

/// The running script; on drop (a failed assertion), SIGTERM and, as a last resort,
/// SIGKILL and `scripts/hosts cleanup`, so a failing test leaves nothing behind either.
struct Hosts {
    child: Child,
    prefix: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Hosts {
    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new(repo().join("scripts/hosts"))
            .args(args)
            .args(["--prefix", &self.prefix])
            .output()
            .unwrap()
    }

    fn kill_host(&self, host: &str) {
        let out = self.script(&["kill-host", host]);
        assert!(out.status.success(), "kill-host {host}: {out:?}");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (bounded) for the script to exit; its exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(status) = self.child.try_wait().unwrap() {
            return status;
        }
        send_signal(self.child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < EXIT_LIMIT,
                "scripts/hosts did not exit within {EXIT_LIMIT:?} of SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.child.id().to_string()])
                .status();
            let started = Instant::now();
            while self.child.try_wait().ok().flatten().is_none() && started.elapsed() < EXIT_LIMIT {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = self.script(&["cleanup"]);
    }
}

fn start_hosts(subnet: &str, prefix: &str) -> Hosts {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hosts.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(repo().join("scripts/hosts"))
        .args(["--subnet", subnet, "--prefix", prefix, "--port", "8080"])
        .env("HOSTS_DIR", dir.path().join("run"))
        .env("STOREFRONT_BIN", storefront_binary())
        .env("HOSTS_READY_TIMEOUT", "60")
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Hosts {
        child,
        prefix: prefix.to_owned(),
        log,
        _dir: dir,
    }
}

fn in_layout(page: &Page) -> bool {
    page.body.contains("Served by <strong>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_on_its_own_host_survives_losing_a_replica_and_the_redis_primary() {
    let started = Instant::now();
    let n = 100 + std::process::id() % 150;
    let subnet = format!("10.77.{n}");
    let prefix = format!("t{}", std::process::id() % 100_000);
    let mut hosts = start_hosts(&subnet, &prefix);
    let url = format!("http://{subnet}.10:8080");

    // Ready: the script says so once nginx answers through the bridge.
    let ready_line = format!("ready: {url}");
    let t = Instant::now();
    while !hosts.log_text().contains(&ready_line) {
        if let Some(status) = hosts.child.try_wait().unwrap() {
            panic!("scripts/hosts exited ({status}):\n{}", hosts.log_text());
        }
        assert!(
            t.elapsed() < READY_LIMIT,
            "scripts/hosts not ready after {READY_LIMIT:?}:\n{}",
            hosts.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_after = t.elapsed();
    let namespaces_up = namespaces(&prefix);
    assert_eq!(namespaces_up.len(), 10, "{namespaces_up:?}");
    assert!(links(&prefix).contains(&format!("{prefix}-br")));

    // The journey, through nginx on its own host, across the replica hosts.
    let user = Browser::new(&url);
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("1", "2").await.assert_redirect("/cart");
    let mut served_by = HashSet::new();
    for _ in 0..12 {
        let page = user.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER), "{page:?}");
        assert_eq!(page.cart_badge(), 2, "{page:?}");
        served_by.insert(page.served_by().to_owned());
    }
    assert_eq!(served_by.len(), 3, "served by {served_by:?}");
    let primary_before = format!("primary {subnet}.21:6379");
    user.get("/session").await.assert_contains(&primary_before);

    // One replica host goes: nginx routes around it, the session is in Redis.
    hosts.kill_host("replica2");
    let mut served_by = HashSet::new();
    for _ in 0..8 {
        let page = user.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER), "{page:?}");
        assert_eq!(page.cart_badge(), 2, "{page:?}");
        served_by.insert(page.served_by().to_owned());
    }
    assert_eq!(
        served_by,
        HashSet::from(["replica-1".to_owned(), "replica-3".to_owned()])
    );

    // The Redis primary's host goes: the sentinels (on their own hosts) promote
    // redis2; meanwhile only the shop's own pages (503 / degraded) are allowed.
    hosts.kill_host("redis1");
    let killed = Instant::now();
    let primary_after = format!("primary {subnet}.22:6379");
    // Recovered: six pages in a row logged in and naming the new primary, from
    // both surviving replicas (each reconnects on its own, pool by pool).
    let mut degraded = 0;
    let mut streak: Vec<String> = Vec::new();
    while streak.len() < 6 || streak.iter().collect::<HashSet<_>>().len() < 2 {
        let page = user.get("/session").await;
        let recovered = page.status == StatusCode::OK
            && page.logged_in_as().as_deref() == Some(DEMO_USER)
            && page.body.contains(&primary_after);
        if recovered {
            streak.push(page.served_by().to_owned());
            continue;
        }
        streak.clear();
        assert!(
            in_layout(&page)
                && (page.status == StatusCode::OK
                    || page.status == StatusCode::SERVICE_UNAVAILABLE),
            "not the shop's own page during the failover: {page:?}"
        );
        degraded += 1;
        assert!(
            killed.elapsed() < FAILOVER_LIMIT,
            "no recovery within {FAILOVER_LIMIT:?}; last page {page:?}\n{}",
            hosts.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failover = killed.elapsed();
    // Still logged in with the cart, on both surviving replicas, and writes work.
    let mut served_by = HashSet::new();
    for _ in 0..6 {
        let page = user.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER), "{page:?}");
        assert_eq!(page.cart_badge(), 2, "{page:?}");
        served_by.insert(page.served_by().to_owned());
    }
    assert_eq!(served_by.len(), 2, "served by {served_by:?}");
    user.add_to_cart("3", "1").await.assert_redirect("/cart");
    assert_eq!(user.get("/").await.cart_badge(), 3);

    // SIGTERM (Ctrl-C takes the same way): everything stops, and every namespace,
    // veth, the bridge and the lock file are gone.
    let pids = host_processes(&prefix);
    assert!(!pids.is_empty());
    assert!(lock_file(&prefix).exists());
    let status = hosts.terminate().await;
    assert!(status.success(), "exit {status}:\n{}", hosts.log_text());
    assert_eq!(namespaces(&prefix), Vec::<String>::new());
    assert_eq!(links(&prefix), Vec::<String>::new());
    let left: Vec<u32> = pids.into_iter().filter(|&p| running(p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(
        !Path::new(&format!("/run/netns/{prefix}-nginx")).exists(),
        "namespace file left"
    );
    assert!(!lock_file(&prefix).exists(), "lock file left");
    let pg_dirs: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("storefront-hosts-{prefix}-pg."))
        })
        .collect();
    assert!(pg_dirs.is_empty(), "Postgres data left: {pg_dirs:?}");
    eprintln!(
        "multihost: ready after {ready_after:?}, failover served {degraded} degraded page(s) \
         and recovered after {failover:?}, total {:?}",
        started.elapsed()
    );
}

/// A process that holds a lock file's flock, as a child that inherited the lock's
/// file descriptor from a `scripts/hosts` run holds it after the run was killed.
/// Killed on drop.
struct LockHolder(Child);

impl LockHolder {
    fn start(lock: &Path) -> LockHolder {
        // --no-fork: the sleep itself holds the lock, so killing it frees it.
        let child = Command::new("flock")
            .arg("--no-fork")
            .arg(lock)
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let holder = LockHolder(child);
        // Ready once a non-blocking attempt of our own fails.
        let t = Instant::now();
        while Command::new("flock")
            .args(["-n"])
            .arg(lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "flock never took {lock:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        holder
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `scripts/hosts cleanup` with the run's lock still taken: refused while the pid
/// in the lock file (the run) lives, done at once when that pid is gone and what
/// holds the lock is only a process the killed run left behind; the lock file
/// is removed either way once the cleanup is done.
#[test]
fn cleanup_works_when_a_killed_runs_leftover_holds_the_lock() {
    let prefix = format!("k{}", std::process::id() % 100_000);
    let lock = lock_file(&prefix);
    let cleanup = || {
        Command::new(repo().join("scripts/hosts"))
            .args(["cleanup", "--prefix", &prefix])
            .env("HOSTS_LOCK_WAIT", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let holder = LockHolder::start(&lock);

    // The recorded run lives (here: the holder itself): a live run is never torn down.
    std::fs::write(&lock, format!("{}\n", holder.0.id())).unwrap();
    let out = cleanup();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("is active (pid {})", holder.0.id())),
        "{stderr}"
    );
    assert!(lock.exists());

    // The recorded run has ended (a pid that has exited and been reaped): the
    // cleanup takes the lock over without waiting, and removes the file.
    let mut ended = Command::new("true").spawn().unwrap();
    let ended_pid = ended.id();
    ended.wait().unwrap();
    std::fs::write(&lock, format!("{ended_pid}\n")).unwrap();
    let t = Instant::now();
    let out = cleanup();
    assert!(out.status.success(), "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "took over the lock of an ended run (pid {ended_pid}"
        )),
        "{stderr}"
    );
    assert!(!lock.exists(), "lock file left");
    drop(holder);
}
