//! A real Postgres for the tests: `initdb` into a temporary directory, `pg_ctl start`
//! on a free loopback port, one server per test binary (started by the first test
//! that asks, in about a second), and a fresh database per test (`CREATE DATABASE`,
//! a few tens of milliseconds).
//!
//! The server is watched by a small shell supervisor whose standard input is a pipe
//! from this process: when the test binary exits (however it exits: passing,
//! panicking, killed), the pipe closes, and the supervisor stops Postgres
//! (`pg_ctl stop -m fast`) and removes the data directory. Nothing is left behind.
//! As root, Postgres runs as the `postgres` user (it refuses to run as root).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::process::{free_port, wait_until};

/// The supervisor: initdb, start, say "ready", wait for stdin to close, stop, clean up.
const SUPERVISOR: &str = r#"
set -eu
port=$1
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || bin=$(dirname "$(command -v pg_ctl)")
dir=$(mktemp -d "${TMPDIR:-/tmp}/storefront-pg.XXXXXX")
as_pg=""
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    as_pg="runuser -u postgres --"
fi
cleanup() {
    $as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
$as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
# fsync=off: a stopped or crashed server loses nothing the OS holds. Commits stay
# synchronous, so a row the app was told is committed is in the OS before the
# answer, and survives `stop` (a crash) as it would in production.
start() {
    $as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 start -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
}
start
echo "ready $dir"
# Commands from the test binary, until it closes our stdin (it exits).
while read -r command; do
    case $command in
        stop) $as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null ;;
        start) start ;;
    esac
    echo "done $command"
done
"#;

pub struct PostgresServer {
    pub port: u16,
    /// The supervisor; its stdin is the pipe whose closing stops Postgres.
    supervisor: Mutex<Child>,
    /// Where the server keeps its data and log (to look at when debugging).
    #[allow(dead_code)]
    pub dir: String,
    /// The supervisor's answers ("done stop", "done start").
    answers: Mutex<Option<BufReader<std::process::ChildStdout>>>,
    next_database: AtomicU32,
}

static SHARED: tokio::sync::OnceCell<PostgresServer> = tokio::sync::OnceCell::const_new();

impl PostgresServer {
    /// This test binary's Postgres, started on first use.
    pub async fn shared() -> &'static PostgresServer {
        SHARED.get_or_init(Self::start).await
    }

    /// A server of the test's own (to stop and start it), stopped and removed when
    /// the test binary exits.
    pub async fn start() -> PostgresServer {
        let port = free_port();
        let mut child = Command::new("sh")
            .args(["-c", SUPERVISOR, "postgres-supervisor", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh");
        let stdout = child.stdout.take().unwrap();
        let (line, answers) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let mut answers = BufReader::new(stdout);
            answers.read_line(&mut line).unwrap();
            (line, answers)
        })
        .await
        .unwrap();
        let dir = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| {
                panic!(
                    "Postgres did not start (the `postgresql` package must be installed; \
                     scripts/test installs it): {line:?}"
                )
            })
            .to_owned();
        let server = PostgresServer {
            port,
            supervisor: Mutex::new(child),
            dir,
            answers: Mutex::new(Some(answers)),
            next_database: AtomicU32::new(0),
        };
        let url = server.url("postgres");
        wait_until("postgres", Duration::from_secs(10), || {
            let url = url.clone();
            async move { sqlx::PgPool::connect(&url).await.is_ok() }
        })
        .await;
        server
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database on the shared server; returns its URL.
    pub async fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("shop_{}_{n}", std::process::id());
        let admin = sqlx::PgPool::connect(&self.url("postgres")).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        self.url(&name)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: like a crash; every
    /// connection drops). Its data stays for [`PostgresServer::resume`].
    pub async fn stop(&self) {
        self.command("stop").await;
    }

    /// Starts the stopped server again, same port, same data.
    pub async fn resume(&self) {
        self.command("start").await;
    }

    async fn command(&self, command: &'static str) {
        use std::io::Write;
        {
            let mut supervisor = self.supervisor.lock().unwrap();
            let stdin = supervisor.stdin.as_mut().unwrap();
            writeln!(stdin, "{command}").unwrap();
            stdin.flush().unwrap();
        }
        let mut answers = self.answers.lock().unwrap().take().unwrap();
        let (line, answers) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            answers.read_line(&mut line).unwrap();
            (line, answers)
        })
        .await
        .unwrap();
        *self.answers.lock().unwrap() = Some(answers);
        assert_eq!(line.trim(), format!("done {command}"), "postgres {command}");
    }
}
