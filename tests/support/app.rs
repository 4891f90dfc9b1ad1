//! The real application, started in-process on port 0 with its own database
//! (a fresh SQLite file, or a fresh database on the binary's Postgres) and,
//! as a test asks, its own redis-server; and what the tests read back from both.

use std::path::Path;
use std::sync::Arc;

use fred::prelude::{ClientLike, HashesInterface, KeysInterface, Pool};

use super::api::{AppState, Application, Config};
use super::browser::Browser;
use super::postgres::PostgresServer;
use super::redis::RedisServer;

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
    /// A fresh database on this test binary's Postgres server (tests/support/postgres.rs).
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
    pub state: AppState,
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
        let bind = config.bind;

        let app = Application::build(config)
            .await
            .expect("application starts");
        let address = match bind {
            std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", app.port()),
            std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", app.port()),
        };
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

    pub async fn order_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM orders")
            .fetch_one(&self.state.db)
            .await
            .unwrap()
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

    /// The id of the user named `name`, who must exist.
    pub async fn user_id(&self, name: &str) -> i64 {
        self.find_user_id(name)
            .await
            .unwrap_or_else(|| panic!("no user named {name:?}"))
    }

    /// The id of the user named `name`, if there is one.
    pub async fn find_user_id(&self, name: &str) -> Option<i64> {
        sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(name)
            .fetch_optional(&self.state.db)
            .await
            .unwrap()
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

/// Runs the same test body against Redis and against the in-memory dev store (users
/// in SQLite), and against Redis with users and products in Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        mod with_redis {
            #[allow(unused_imports)]
            use super::*;
            use $crate::support::app::{Backend, TestApp};
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
            use $crate::support::app::{Backend, TestApp};
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
            use $crate::support::app::{Backend, Database, TestApp};
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
