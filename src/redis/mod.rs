//! Redis: the connection every store shares, what the shop checks of it, and the
//! one error type of every Redis-backed store ([`StoreError`]).
//!
//! Each store (sessions, the per-user session index, carts, the login throttle)
//! keeps its own keys and scripts beside its code; this module only knows how to
//! reach Redis and how to tell the user what a failed command means.

pub mod budget;
pub mod checks;
pub mod cluster;
pub mod durability;
pub mod memory;
pub mod topology;

use std::time::Duration;

use anyhow::Context;
use fred::prelude::{
    Builder, Client, ClientLike, Config as RedisConfig, Pool, ReconnectPolicy, TcpConfig,
};

use crate::db::redact;

pub use budget::bounded;
pub use durability::Durability;

/// `prefix{<kind><id>}suffix`: a key in the hash slot of one user (`kind` `u`) or
/// one anonymous cart (`a`): Redis Cluster hashes only the part in braces, so every
/// key of a cart or a user's sessions lands on one node. Built in one allocation,
/// without the formatter (a key is made on every page view and every add).
pub fn slot_key(prefix: &str, kind: char, id: &str, suffix: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + id.len() + suffix.len() + 3);
    key.push_str(prefix);
    key.push('{');
    key.push(kind);
    key.push_str(id);
    key.push('}');
    key.push_str(suffix);
    key
}

/// [`slot_key`] for a user's id.
pub fn user_key(prefix: &str, user_id: i64, suffix: &str) -> String {
    slot_key(prefix, 'u', itoa::Buffer::new().format(user_id), suffix)
}

/// A pool of Redis connections that never waits forever: fred's defaults would
/// queue commands until Redis comes back. Here a command fails after
/// `timeout` (the user gets a 503 page), and reconnection is retried every
/// half second, so the app recovers by itself when Redis returns.
pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Pool> {
    // One connection, not several: fred pipelines the commands that concurrent
    // requests send at the same moment into one write, and Redis answers them
    // with one read and one write. Redis runs commands on one thread anyway;
    // more connections only add system calls (docs/PERFORMANCE.md).
    connect_pool(url, timeout, 1).await
}

/// [`connect`], with `size` connections.
pub async fn connect_pool(url: &str, timeout: Duration, size: usize) -> anyhow::Result<Pool> {
    let config = RedisConfig::from_url(url)
        .with_context(|| format!("REDIS_URL `{}` is not valid", redact(url)))?;
    let pool = Builder::from_config(config)
        .with_performance_config(|perf| {
            perf.default_command_timeout = timeout;
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = timeout;
            conn.internal_command_timeout = timeout;
            conn.max_command_attempts = 1;
            conn.tcp = TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        })
        .set_policy(ReconnectPolicy::new_constant(0, 500))
        .build_pool(size)
        .context("building the Redis pool")?;
    pool.init()
        .await
        .with_context(|| format!("connecting to Redis at {}", redact(url)))?;
    Ok(pool)
}

/// The shop's way to Redis: the pool, and on a Redis Cluster one connection per
/// primary, chosen by each command's key ([`cluster`]).
#[derive(Debug, Clone)]
pub struct Redis {
    pool: Pool,
    nodes: Option<std::sync::Arc<cluster::Nodes>>,
}

impl Redis {
    /// Connects to `url` ([`connect`]); a Cluster URL also to each primary.
    pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Redis> {
        let pool = connect(url, timeout).await?;
        let nodes = if topology::Mode::of_url(url) == topology::Mode::Cluster {
            Some(
                cluster::Nodes::start(pool.clone(), timeout)
                    .await
                    .context("connecting to each Redis Cluster primary")?,
            )
        } else {
            None
        };
        Ok(Redis { pool, nodes })
    }

    /// The pool itself: for the checks and the topology shown to operators.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection a command on `key` will use, only while it is connected: see
    /// [`connected`]. On a Cluster, the connection to the key's primary: a dead
    /// primary fails the commands on its slots, not everyone's.
    pub fn connected(&self, key: &str) -> Result<Client, StoreError> {
        match &self.nodes {
            Some(nodes) => nodes.connected(key),
            None => connected(&self.pool).cloned(),
        }
    }
}

/// A replica does not start on a Redis that would evict sessions and carts
/// (see [`checks`]), unless told to accept it.
pub async fn refuse_evicting(pool: &Pool, allowed: bool) -> anyhow::Result<()> {
    let facts = checks::read(pool)
        .await
        .context("reading Redis's maxmemory-policy")?;
    match facts.policy.as_deref() {
        None => tracing::warn!(
            "Redis does not allow CONFIG GET: cannot check that maxmemory-policy is noeviction"
        ),
        Some(_) if facts.evicts() && allowed => tracing::warn!(
            policy = facts.policy.as_deref().unwrap_or("?"),
            "Redis may evict sessions and carts when full (--allow-evicting-redis is set)"
        ),
        Some(_) if facts.evicts() => anyhow::bail!(facts.eviction_refusal()),
        Some(_) => {}
    }
    Ok(())
}

/// The connection a command will use, only while it is connected: while Redis is
/// down a command fails at once, with nothing sent, instead of queueing until the
/// command timeout. A write that was never sent is known not to have happened,
/// and pages that only read are drawn without the visitor (degraded mode).
pub fn connected(pool: &Pool) -> Result<&Client, StoreError> {
    let client = pool.next();
    if client.is_connected() {
        Ok(client)
    } else {
        Err(StoreError::Unavailable(fred::error::Error::new(
            fred::error::ErrorKind::IO,
            "not connected to Redis",
        )))
    }
}

/// Why a Redis command failed, as the user needs to hear it: the three answers a
/// write can have besides success.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not connected, refused by Redis, or a read that failed: nothing changed.
    #[error("Redis is unavailable: {0}")]
    Unavailable(fred::error::Error),
    /// Redis refused the write because it is full (`maxmemory` with `noeviction`):
    /// nothing changed.
    #[error("Redis is full: {0}")]
    Full(fred::error::Error),
    /// A write was sent but its answer never came (a timeout, a connection that
    /// broke while waiting): it may or may not have been applied.
    #[error("Redis did not answer in time: {0}")]
    Unknown(fred::error::Error),
}

impl StoreError {
    /// A failed write: its outcome is unknown when the command may have run.
    pub fn write(err: fred::error::Error) -> Self {
        use fred::error::ErrorKind;
        if err.details().starts_with("OOM") {
            StoreError::Full(err)
        } else if matches!(
            err.kind(),
            ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled
        ) {
            StoreError::Unknown(err)
        } else {
            StoreError::Unavailable(err)
        }
    }
}

/// A failed read, or a command whose effect the caller does not report: the user
/// is told nothing changed. Writes that report their outcome use [`StoreError::write`].
impl From<fred::error::Error> for StoreError {
    fn from(err: fred::error::Error) -> Self {
        StoreError::Unavailable(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keys_put_the_tag_in_braces() {
        assert_eq!(user_key("cart:", 42, ""), "cart:{u42}");
        assert_eq!(user_key("sessions:", -7, ":epoch"), "sessions:{u-7}:epoch");
        assert_eq!(
            slot_key("cart:", 'a', "xY_1", ":retired"),
            "cart:{axY_1}:retired"
        );
    }
}
