//! The database for users and products: SQLite or Postgres, chosen by `DATABASE_URL`.
//!
//! - `sqlite://data/storefront.db` (the default, so `cargo run` needs nothing): one
//!   file shared by every replica on a host. WAL lets readers and one writer work at
//!   once; `busy_timeout` makes a writer wait for the lock instead of failing with
//!   "database is locked" when another replica (another process) is writing.
//! - `postgres://user:password@host:5432/storefront`: replicas on different hosts.
//!
//! Both go through sqlx's `Any` driver ([`Db`] = `AnyPool`), so every query is written
//! once, in the SQL both understand: `$1, $2, …` placeholders, `ON CONFLICT`,
//! `RETURNING`, integers for ids, times (unix seconds) and money (cents). The `Any`
//! driver decodes only what both have (integers, text, floats, bytes, booleans), so
//! a query that works on one backend works on the other; the tests run the shop on
//! both (tests/shop.rs). Each backend has its own migrations (`migrations/sqlite`,
//! `migrations/postgres`) describing the same schema.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Executor;

/// A pool of connections to SQLite or Postgres.
pub type Db = sqlx::AnyPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Which backend a `DATABASE_URL` names.
    pub fn of_url(database_url: &str) -> anyhow::Result<Backend> {
        let scheme = database_url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => anyhow::bail!(
                "DATABASE_URL `{}` is neither sqlite://… nor postgres://…",
                redact(database_url)
            ),
        }
    }

    /// The backend a pool was opened on.
    pub fn of(db: &Db) -> Backend {
        match db.connect_options().database_url.scheme() {
            "sqlite" => Backend::Sqlite,
            _ => Backend::Postgres,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

pub async fn connect(database_url: &str) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(database_url)?;
    let url = match backend {
        Backend::Sqlite => sqlite_url(database_url)?,
        Backend::Postgres => database_url.to_owned(),
    };
    let options = AnyPoolOptions::new()
        // A connection Postgres dropped (restart, failover) is noticed before use.
        .test_before_acquire(true);
    let options = match backend {
        // The file is shared by the replicas on one host: a few connections each.
        // Waiting for one is waiting for another replica's write (WAL lock).
        Backend::Sqlite => options
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await
                    .map(|_| ())
                })
            }),
        // Postgres serves many replicas; it allows 100 connections by default.
        // While it is unreachable, sqlx retries connecting until the acquire
        // timeout: that is how long a request waits before its 503 page.
        Backend::Postgres => options
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(2)),
    };
    options
        .connect(&url)
        .await
        .with_context(|| format!("opening {}", redact(database_url)))
}

/// The SQLite URL with `mode=rwc` (create the file if missing); creates its directory.
fn sqlite_url(database_url: &str) -> anyhow::Result<String> {
    let options = SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("DATABASE_URL `{database_url}` is not a SQLite URL"))?;
    if let Some(dir) = options
        .get_filename()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if database_url.contains("mode=") || database_url.contains(":memory:") {
        return Ok(database_url.to_owned());
    }
    let separator = if database_url.contains('?') { '&' } else { '?' };
    Ok(format!("{database_url}{separator}mode=rwc"))
}

/// Applies the backend's migrations (embedded in the binary); applied ones are
/// skipped. Safe to run from several processes at once: on Postgres sqlx holds an
/// advisory lock. SQLite has no such lock, so two replicas starting together on a
/// new file can both try migration 1 and one fails ("table users already exists");
/// it then tries again, finds the other's migrations recorded, and has nothing to do.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    let migrator = match Backend::of(db) {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let mut attempt = 1;
    loop {
        match migrator.run(db).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 && Backend::of(db) == Backend::Sqlite => {
                tracing::debug!(error = %e, attempt, "migration raced another process; again");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e).context("running migrations"),
        }
    }
}

/// The database cannot be reached right now (as opposed to a query that is wrong):
/// the user gets the 503 page and can retry. Covers a stopped or restarting
/// Postgres, a dropped connection, a full pool, and SQLite's lock timeout.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // Postgres: 08xxx connection exception, 57P01..57P03 shutdown / cannot
            // connect now, 53xxx insufficient resources (too many connections).
            // SQLite (numeric, extended codes carry the primary code in the low
            // byte): 5 SQLITE_BUSY, 6 SQLITE_LOCKED (busy_timeout ran out).
            let sqlite_busy = matches!(sqlite_primary_code(&code), Some(5 | 6));
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || sqlite_busy
        }),
        _ => false,
    }
}

/// Gives back a connection whose transaction failed to commit by closing it: the
/// pool opens a fresh one. After a failed COMMIT (a full disk) SQLite may or may
/// not have rolled the transaction back by itself, and a connection left unsure
/// of it must not serve the next request (a stale snapshot, a transaction that
/// never ends). Used by every write (`auth::users`, `orders::store`).
pub async fn discard(connection: sqlx::pool::PoolConnection<sqlx::Any>) {
    if let Err(err) = connection.close().await {
        tracing::debug!(error = %err, "closing a connection after a failed commit");
    }
}

/// The database refused a write for want of space: SQLite's `SQLITE_FULL` (13,
/// and its extended codes), Postgres's `53100 disk_full`. The write was rolled
/// back; the user gets the 503 page saying nothing was saved.
pub fn is_full(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| code == "53100" || sqlite_primary_code(&code) == Some(13)),
        _ => false,
    }
}

/// SQLite's primary result code, from the (extended, numeric) code sqlx reports;
/// `None` for Postgres's five-character SQLSTATEs.
fn sqlite_primary_code(code: &str) -> Option<u32> {
    (code.len() < 5)
        .then(|| code.parse::<u32>().ok())
        .flatten()
        .map(|n| n & 0xff)
}

/// A database URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_backend() {
        assert_eq!(
            Backend::of_url("sqlite://data/storefront.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::of_url("postgres://u:p@db:5432/shop").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://db/shop").unwrap(),
            Backend::Postgres
        );
        let err = Backend::of_url("mysql://u:secret@db/shop").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn a_sqlite_url_creates_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/shop.db", dir.path().display());
        assert_eq!(sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
        let ro = format!("{url}?mode=ro");
        assert_eq!(sqlite_url(&ro).unwrap(), ro);
    }
}
