//! Which Redis the shop talks to, said in words for `/readyz` and the session
//! inspector. `REDIS_URL` picks the kind (fred's URL forms):
//!
//! - `redis://host:6379/0`: one server.
//! - `redis-sentinel://s1:26379/0?sentinelServiceName=shop&node=s2:26379&node=s3:26379`:
//!   ask the sentinels which server is the primary of the service `shop`; after a
//!   failover, reconnect to the new primary.
//! - `redis-cluster://n1:6379?node=n2:6379&node=n3:6379`: a Redis Cluster; every key
//!   goes to the primary that owns its hash slot.

use fred::prelude::{ClientLike, Pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Sentinel,
    Cluster,
}

impl Mode {
    pub fn of_url(url: &str) -> Mode {
        let scheme = url.split("://").next().unwrap_or_default();
        if scheme.ends_with("-cluster") {
            Mode::Cluster
        } else if scheme.ends_with("-sentinel") || url.contains("sentinelServiceName=") {
            Mode::Sentinel
        } else {
            Mode::Single
        }
    }
}

/// The servers this pool is connected to right now, `host:port`, sorted: the one
/// server, the sentinels' current primary, or every cluster primary.
pub fn connected_primaries(pool: &Pool) -> Vec<String> {
    let mut servers: Vec<String> = pool
        .active_connections()
        .into_iter()
        .map(|s| format!("{}:{}", s.host, s.port))
        .collect();
    servers.sort();
    servers.dedup();
    servers
}

/// "primary 10.0.0.5:6379 (chosen by the sentinels)", "3 cluster primaries: …",
/// or "server 127.0.0.1:6379".
pub fn describe(pool: &Pool, mode: Mode) -> String {
    let servers = connected_primaries(pool);
    let list = if servers.is_empty() {
        "none connected".to_owned()
    } else {
        servers.join(", ")
    };
    match mode {
        Mode::Single => format!("server {list}"),
        Mode::Sentinel => format!("primary {list} (chosen by the sentinels)"),
        Mode::Cluster => format!("{} cluster primaries: {list}", servers.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_kind() {
        assert_eq!(Mode::of_url("redis://127.0.0.1:6379/0"), Mode::Single);
        assert_eq!(
            Mode::of_url("redis-sentinel://a:26379/0?sentinelServiceName=shop&node=b:26379"),
            Mode::Sentinel
        );
        assert_eq!(
            Mode::of_url("rediss://a:26379/0?sentinelServiceName=shop"),
            Mode::Sentinel
        );
        assert_eq!(
            Mode::of_url("redis-cluster://a:7000?node=b:7001"),
            Mode::Cluster
        );
    }
}
