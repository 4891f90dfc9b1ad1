//! What the shop needs of its Redis, checked at start and by `/readyz`.
//!
//! Sessions and carts all carry TTLs, so under any evicting `maxmemory-policy`
//! (`allkeys-*`, and every `volatile-*`) a full Redis would silently delete them:
//! users logged out, carts gone, nothing said. The shop wants `noeviction`: a full
//! Redis then refuses writes, and the user is told the shop cannot save right now.

use fred::prelude::{ClientLike, Pool};

/// Redis's eviction policy and how full it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisFacts {
    /// `None` when Redis refuses `CONFIG GET` (some managed services do).
    pub policy: Option<String>,
    pub used_memory: u64,
    /// 0 means no limit.
    pub max_memory: u64,
}

impl RedisFacts {
    /// True when Redis may delete sessions and carts on its own to make room.
    pub fn evicts(&self) -> bool {
        self.policy.as_deref().is_some_and(|p| p != "noeviction")
    }

    /// True when Redis is at its memory limit and refuses writes.
    pub fn full(&self) -> bool {
        self.max_memory > 0 && self.used_memory >= self.max_memory
    }

    /// The sentence a replica logs when it refuses to start on an evicting Redis.
    pub fn eviction_refusal(&self) -> String {
        format!(
            "Redis's maxmemory-policy is `{}`: when Redis is full it would silently delete \
             sessions and carts (users logged out, carts emptied). Set `maxmemory-policy \
             noeviction` (in redis.conf, or `redis-cli CONFIG SET maxmemory-policy noeviction`) \
             so that a full Redis refuses writes instead, which the shop reports; or start with \
             --allow-evicting-redis (ALLOW_EVICTING_REDIS=true) to accept the risk.",
            self.policy.as_deref().unwrap_or("?")
        )
    }
}

/// Reads the policy (`CONFIG GET maxmemory-policy`) and `INFO memory`.
pub async fn read(pool: &Pool) -> Result<RedisFacts, fred::error::Error> {
    let client = pool.next();
    let policy: Option<String> = match client
        .custom::<Vec<String>, _>(
            fred::cmd!("CONFIG"),
            vec!["GET".to_owned(), "maxmemory-policy".to_owned()],
        )
        .await
    {
        Ok(pair) => pair.into_iter().nth(1),
        // Not allowed (managed Redis) is not an outage: say so and go on.
        Err(err)
            if err.details().contains("unknown command") || err.details().starts_with("NOPERM") =>
        {
            None
        }
        Err(err) => return Err(err),
    };
    let info: String = client
        .custom(fred::cmd!("INFO"), vec!["memory".to_owned()])
        .await?;
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(RedisFacts {
        policy,
        used_memory: field("used_memory"),
        max_memory: field("maxmemory"),
    })
}

/// How far a replica's clock may be from Redis's before it is reported (a log line
/// at start, a line in `/readyz`).
pub const CLOCK_SKEW_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How far this replica's clock is from Redis's, in seconds: positive when the
/// replica is ahead. Every expiry the shop writes is a lifetime (`EX`), and the
/// times the cart scripts keep are Redis's own (`TIME`), so a replica with a wrong clock
/// neither logs shoppers out nor makes others forget applied forms; but the dates
/// it shows and logs are off, so the difference is reported. Measured against the
/// middle of the round trip.
pub async fn clock_skew(pool: &Pool) -> Result<f64, fred::error::Error> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let before = now();
    let time: Vec<String> = pool
        .next()
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await?;
    let after = now();
    let part = |i: usize| {
        time.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let redis = part(0) + part(1) / 1e6;
    Ok((before + after) / 2.0 - redis)
}

/// The clock line of `/readyz` and the start-up log, given [`clock_skew`].
pub fn describe_skew(skew: f64) -> String {
    let side = if skew >= 0.0 { "ahead of" } else { "behind" };
    let mut line = format!("{:.1} s {side} Redis's", skew.abs());
    if skew.abs() > CLOCK_SKEW_LIMIT.as_secs_f64() {
        line.push_str(" (more than the 2 s allowed: check this host's time sync)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_noeviction_keeps_sessions() {
        let facts = |policy: &str| RedisFacts {
            policy: Some(policy.to_owned()),
            used_memory: 10,
            max_memory: 0,
        };
        assert!(!facts("noeviction").evicts());
        for evicting in [
            "allkeys-lru",
            "volatile-lru",
            "volatile-ttl",
            "allkeys-random",
        ] {
            assert!(facts(evicting).evicts(), "{evicting}");
        }
        assert!(!facts("noeviction").full());
        let full = RedisFacts {
            max_memory: 10,
            ..facts("noeviction")
        };
        assert!(full.full());
        assert!(facts("allkeys-lru")
            .eviction_refusal()
            .contains("noeviction"));
    }
}
