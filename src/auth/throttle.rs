//! Login throttling, shared by every replica through Redis.
//!
//! Two counters per failed login: one for the username, one for the client address,
//! each living for the throttle window from its first failure
//! (`throttle:login:user:<name>`, `throttle:login:client:<ip>`). While either is at
//! its limit, login attempts get a 429 page with `Retry-After`. A successful login
//! clears the username's counter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{KeysInterface, Pool};
use fred::types::scripts::Script;

/// Counts one failure on each key; starts the window on the first.
/// KEYS: the counters; ARGV[1]: window in seconds.
const FAIL_LUA: &str = r#"
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 0
"#;
static FAIL_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(FAIL_LUA));

#[derive(Debug, Clone)]
pub struct Limits {
    pub per_user: u32,
    pub per_client: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    backend: Backend,
    limits: Limits,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Pool),
    Memory(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
}

fn user_key(username: &str) -> String {
    format!("throttle:login:user:{username}")
}

fn client_key(ip: IpAddr) -> String {
    format!("throttle:login:client:{ip}")
}

impl LoginThrottle {
    pub fn redis(pool: Pool, limits: Limits) -> Self {
        LoginThrottle {
            backend: Backend::Redis(pool),
            limits,
        }
    }

    pub fn memory(limits: Limits) -> Self {
        LoginThrottle {
            backend: Backend::Memory(Arc::default()),
            limits,
        }
    }

    /// The counters that apply, with their limits: the client's, and the username's
    /// when it is a possible username.
    fn counters(&self, username: Option<&str>, client: IpAddr) -> Vec<(String, u32)> {
        let mut counters = vec![(client_key(client), self.limits.per_client)];
        if let Some(name) = username {
            counters.push((user_key(name), self.limits.per_user));
        }
        counters
    }

    /// `Some(wait)` when this username or client has failed too often recently.
    pub async fn blocked_for(
        &self,
        username: Option<&str>,
        client: IpAddr,
    ) -> anyhow::Result<Option<Duration>> {
        let (keys, limits): (Vec<String>, Vec<u32>) =
            self.counters(username, client).into_iter().unzip();
        match &self.backend {
            Backend::Redis(pool) => {
                let counts: Vec<Option<u32>> = pool.mget(keys.clone()).await?;
                for (key, (count, limit)) in keys.iter().zip(counts.into_iter().zip(limits)) {
                    if count.unwrap_or(0) >= limit {
                        let ttl_ms: i64 = pool.pttl(key).await?;
                        let wait = if ttl_ms > 0 {
                            Duration::from_millis(ttl_ms as u64)
                        } else {
                            self.limits.window
                        };
                        return Ok(Some(wait));
                    }
                }
                Ok(None)
            }
            Backend::Memory(counters) => {
                let counters = counters.lock().expect("throttle lock");
                let now = Instant::now();
                for (key, limit) in keys.iter().zip(limits) {
                    if let Some((count, until)) = counters.get(key) {
                        if *until > now && *count >= limit {
                            return Ok(Some(*until - now));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    pub async fn record_failure(
        &self,
        username: Option<&str>,
        client: IpAddr,
    ) -> anyhow::Result<()> {
        let keys: Vec<String> = self
            .counters(username, client)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        match &self.backend {
            Backend::Redis(pool) => {
                let window = self.limits.window.as_secs().max(1).to_string();
                let _: i64 = FAIL_SCRIPT
                    .evalsha_with_reload(pool.next(), keys, vec![window])
                    .await?;
            }
            Backend::Memory(counters) => {
                let mut counters = counters.lock().expect("throttle lock");
                let now = Instant::now();
                counters.retain(|_, (_, until)| *until > now);
                for key in keys {
                    counters
                        .entry(key)
                        .or_insert((0, now + self.limits.window))
                        .0 += 1;
                }
            }
        }
        Ok(())
    }

    pub async fn clear_user(&self, username: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Redis(pool) => pool.del::<(), _>(user_key(username)).await?,
            Backend::Memory(counters) => {
                counters
                    .lock()
                    .expect("throttle lock")
                    .remove(&user_key(username));
            }
        }
        Ok(())
    }
}
