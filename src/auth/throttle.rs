//! Login and registration throttling, shared by every replica through Redis.
//!
//! An attempt is **counted before the password is verified**, in one atomic Redis
//! step per counter (a Lua script: `INCR`, start the window on the first attempt,
//! compare with the limit). So N simultaneous guesses can never verify more
//! passwords than the limits allow: the (limit+1)-th increment sees a number over
//! the limit whatever the timing. A successful login gives back what it took (see
//! [`LoginThrottle::succeeded`]), so the counters hold failures plus attempts in
//! flight.
//!
//! The counters (policy and numbers in SECURITY.md):
//! - **username from one client address** (`LOGIN_MAX_FAILURES_PER_USER`, 5): the
//!   guesser's own limit. Failures from one address never lock the owner out from
//!   another address.
//! - **client address, any username** (`LOGIN_MAX_FAILURES_PER_CLIENT`, 20): one
//!   address spraying many usernames.
//! - **username, all addresses together** (`LOGIN_MAX_FAILURES_PER_USER_TOTAL`,
//!   100): the ceiling against a guesser with many addresses. Only attempts that
//!   passed their address's limit reach it, so one address adds at most 5 to it:
//!   locking the owner out takes 20 addresses, every window.
//!
//! Keys, each script touching one hash slot (Redis Cluster safe):
//! `throttle:login:{user:<name>}:from:<ip>` and `throttle:login:{user:<name>}`
//! share the username's slot and are checked by one script;
//! `throttle:login:{client:<ip>}` and `throttle:register:{client:<ip>}` live in the
//! address's slot. The two login scripts are sent at once (pipelined on the one
//! connection); each is race-free on its own.

use crate::telemetry::metrics::{redis_call as measured, RedisKind};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::Pool;
use fred::types::scripts::Script;

use crate::redis::StoreError;

/// Counts one attempt on each key in order, stopping at the first that is over its
/// limit. Returns 0 when the attempt may go on, else the refusing key's PTTL in ms.
/// KEYS: counters of one hash slot; ARGV[1]: window in seconds; ARGV[2..]: limits.
const ATTEMPT_LUA: &str = r#"
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then
    redis.call('EXPIRE', key, ARGV[1])
  end
  if n > tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
return 0
"#;

/// Gives back an attempt that succeeded: deletes KEYS[1] if ARGV[1] is "1", and
/// decrements the other keys (never creating one; one that reaches 0 is deleted).
const REFUND_LUA: &str = r#"
for i, key in ipairs(KEYS) do
  if i == 1 and ARGV[1] == '1' then
    redis.call('DEL', key)
  elseif tonumber(redis.call('GET', key) or '0') > 0 then
    if redis.call('DECR', key) <= 0 then
      redis.call('DEL', key)
    end
  end
end
return 0
"#;

static ATTEMPT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(ATTEMPT_LUA));
static REFUND_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(REFUND_LUA));

#[derive(Debug, Clone)]
pub struct Limits {
    /// Attempts per username from one client address.
    pub per_user: u32,
    /// Attempts per client address, all usernames.
    pub per_client: u32,
    /// Attempts per username from all addresses together.
    pub per_user_total: u32,
    pub window: Duration,
    /// Registrations per client address.
    pub register_per_client: u32,
    pub register_window: Duration,
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

/// The throttle's answer: go on, or wait this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Wait(Duration),
}

fn pair_key(username: &str, client: IpAddr) -> String {
    format!("throttle:login:{{user:{username}}}:from:{client}")
}

fn user_key(username: &str) -> String {
    format!("throttle:login:{{user:{username}}}")
}

fn client_key(client: IpAddr) -> String {
    format!("throttle:login:{{client:{client}}}")
}

fn register_key(client: IpAddr) -> String {
    format!("throttle:register:{{client:{client}}}")
}

/// A group of counters in one hash slot, checked by one script.
struct Group {
    keys: Vec<String>,
    limits: Vec<u32>,
    window: Duration,
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

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn login_groups(&self, username: Option<&str>, client: IpAddr) -> Vec<Group> {
        let window = self.limits.window;
        let mut groups = vec![Group {
            keys: vec![client_key(client)],
            limits: vec![self.limits.per_client],
            window,
        }];
        if let Some(name) = username {
            groups.push(Group {
                keys: vec![pair_key(name, client), user_key(name)],
                limits: vec![self.limits.per_user, self.limits.per_user_total],
                window,
            });
        }
        groups
    }

    /// Counts a login attempt (or a re-authentication) before the password is
    /// checked. `username` is `None` for a name that cannot exist: it counts
    /// against the client address only.
    pub async fn login_attempt(
        &self,
        username: Option<&str>,
        client: IpAddr,
    ) -> Result<Verdict, StoreError> {
        self.attempt(self.login_groups(username, client)).await
    }

    /// Gives back a successful login's attempt: the username's counter for this
    /// address is cleared (the owner proved who they are here), the others drop by one.
    pub async fn succeeded(&self, username: &str, client: IpAddr) -> Result<(), StoreError> {
        let user_keys = vec![pair_key(username, client), user_key(username)];
        let client_keys = vec![client_key(client)];
        match &self.backend {
            Backend::Redis(pool) => {
                measured(RedisKind::Throttle, async {
                    let (a, b) = tokio::join!(
                        REFUND_SCRIPT.evalsha_with_reload::<i64, _, _>(
                            pool.next(),
                            user_keys,
                            vec!["1"]
                        ),
                        REFUND_SCRIPT.evalsha_with_reload::<i64, _, _>(
                            pool.next(),
                            client_keys,
                            vec!["0"]
                        ),
                    );
                    a?;
                    b?;
                    Ok::<(), StoreError>(())
                })
                .await?
            }
            Backend::Memory(counters) => {
                let mut counters = counters.lock().expect("throttle lock");
                counters.remove(&user_keys[0]);
                for key in [&user_keys[1], &client_keys[0]] {
                    if let Some((n, _)) = counters.get_mut(key) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a registration attempt from `client`.
    pub async fn register_attempt(&self, client: IpAddr) -> Result<Verdict, StoreError> {
        self.attempt(vec![Group {
            keys: vec![register_key(client)],
            limits: vec![self.limits.register_per_client],
            window: self.limits.register_window,
        }])
        .await
    }

    async fn attempt(&self, groups: Vec<Group>) -> Result<Verdict, StoreError> {
        let waits: Vec<i64> = match &self.backend {
            Backend::Redis(pool) => {
                measured(RedisKind::Throttle, async {
                    let call = |group: Group| {
                        let mut args = vec![group.window.as_secs().max(1).to_string()];
                        args.extend(group.limits.iter().map(u32::to_string));
                        ATTEMPT_SCRIPT.evalsha_with_reload::<i64, _, _>(
                            pool.next(),
                            group.keys,
                            args,
                        )
                    };
                    let mut groups = groups.into_iter();
                    Ok::<_, StoreError>(match (groups.next(), groups.next()) {
                        (Some(a), Some(b)) => {
                            // Sent together: fred writes both at once on the shared connection.
                            let (a, b) = tokio::join!(call(a), call(b));
                            vec![a?, b?]
                        }
                        (Some(a), None) => vec![call(a).await?],
                        _ => Vec::new(),
                    })
                })
                .await?
            }
            Backend::Memory(counters) => {
                let mut counters = counters.lock().expect("throttle lock");
                let now = Instant::now();
                counters.retain(|_, (_, until)| *until > now);
                groups
                    .into_iter()
                    .map(|group| {
                        for (key, limit) in group.keys.into_iter().zip(group.limits) {
                            let entry = counters.entry(key).or_insert((0, now + group.window));
                            entry.0 += 1;
                            if entry.0 > limit {
                                return (entry.1 - now).as_millis().max(1) as i64;
                            }
                        }
                        0
                    })
                    .collect()
            }
        };
        Ok(match waits.into_iter().max().unwrap_or(0) {
            wait if wait > 0 => Verdict::Wait(Duration::from_millis(wait as u64)),
            _ => Verdict::Allowed,
        })
    }
}
