//! Login and registration throttling, shared by every replica through Redis.
//!
//! **A login counts as a failure once its password was checked and found wrong**,
//! never before. Counting before the check punished the owner for what could not
//! be known yet: ten browsers logging in at once from one address got 429, and a
//! login retried while Redis stalled was counted at every retry (the stalled
//! counts all ran when Redis came back). Yet a guesser's simultaneous attempts
//! must not all be checked before any is counted. So a login is two atomic steps,
//! each one Lua script per hash slot:
//!
//! 1. **begin**: refused if a counter's failures already reach its limit. An
//!    attempt in flight (begun, not yet decided) holds a short *lease*; when the
//!    failures plus the attempts in flight reach a limit, this attempt waits for
//!    them (they may be the owner's and succeed) instead of being refused, and is
//!    refused only if they failed. Otherwise it takes a lease of its own.
//! 2. **finish**: a wrong password adds one failure to each counter; a right one
//!    only ends the lease (and clears the username's counter for this address:
//!    the owner proved who they are here). An attempt that never finishes (a
//!    Redis timeout, a replica gone) is *unknown*: its lease runs out and it
//!    counts as nothing. Its verdict was never sent, so nobody learnt from it.
//!
//! The login form's one-time id makes a retried form one attempt: while a try of
//! the form holds its lease another try of it waits (a begin that Redis runs late,
//! after its replica gave up, finds the first try's lease and changes nothing), and
//! a form whose password was wrong is spent: sent again, it is refused unchecked.
//! Reusing an id never buys an unchecked guess, and minting new ids buys nothing:
//! every check that fails is counted.
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
//! (`<net>`: the client's network, [`client_network`]: an IPv6 client's /64)
//! `throttle:login:{user:<name>}:from:<net>` and `throttle:login:{user:<name>}`
//! (failures; each with an `:inflight` sorted set of leases) and the form's state
//! `throttle:login:{user:<name>}:form:<id>` share the username's slot;
//! `throttle:login:{client:<net>}` (with its `:inflight` and `:form:<id>`) and
//! `throttle:register:{client:<net>}` live in the network's slot.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis::{bounded, Redis};
use crate::telemetry::metrics::{redis_call as measured, RedisKind};

use crate::redis::StoreError;

mod lua;
mod memory;

use lua::{BEGIN_SCRIPT, COUNT_SCRIPT, FINISH_SCRIPT};
use memory::MemoryState;

/// How long a login waits for other attempts in flight before it is told to try
/// again in a moment, and how often it looks meanwhile.
const BUSY_WAIT: Duration = Duration::from_secs(2);
const BUSY_POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct Limits {
    /// Failures per username from one client address.
    pub per_user: u32,
    /// Failures per client address, all usernames.
    pub per_client: u32,
    /// Failures per username from all addresses together.
    pub per_user_total: u32,
    pub window: Duration,
    /// How long an attempt in flight holds its place: longer than a login takes
    /// (its Redis and database reads and the password check), so that only an
    /// attempt that will never finish outlives it.
    pub lease: Duration,
    /// Registrations per client address.
    pub register_per_client: u32,
    pub register_window: Duration,
    /// New anonymous carts (with their sessions) per client network.
    pub anon_carts_per_client: u32,
    pub anon_cart_window: Duration,
}

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    backend: Backend,
    limits: Limits,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Redis),
    Memory(Arc<Mutex<MemoryState>>),
}

/// The registration throttle's answer: go on, or wait this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Wait(Duration),
}

/// The login throttle's answer.
#[derive(Debug)]
pub enum LoginVerdict {
    /// Check the password, then [`LoginThrottle::finish`] the attempt.
    Go(Attempt),
    /// Too many failures: wait this long.
    Wait(Duration),
    /// Other attempts for this name or address are being checked right now.
    Busy(Duration),
    /// This form's password was already found wrong: it is not checked again.
    FormSpent,
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Failed,
    Succeeded,
    /// The password was not checked (no hashing slot): nothing counts, and the
    /// form may be sent again at once.
    NotChecked,
}

/// A login attempt allowed to check a password. Dropped without
/// [`LoginThrottle::finish`] (an error on the way), it is unknown: its lease runs
/// out and it counts as nothing.
#[derive(Debug)]
#[must_use = "an attempt is finished with its outcome"]
pub struct Attempt {
    groups: Vec<Group>,
    nonce: String,
    form: Option<String>,
}

/// The counters of one hash slot, checked by one script.
#[derive(Debug, Clone)]
struct Group {
    /// The slot's key prefix; the form's state is `<base>:form:<id>`.
    base: String,
    keys: Vec<String>,
    limits: Vec<u32>,
    /// The first counter is this address's for the username: a success clears it.
    clear_first_on_success: bool,
}

impl Group {
    /// KEYS for begin and finish: each counter with its leases, then the form.
    fn script_keys(&self, form: Option<&str>) -> Vec<String> {
        let mut keys = Vec::with_capacity(self.keys.len() * 2 + 1);
        for key in &self.keys {
            keys.push(key.clone());
            keys.push(inflight_key(key));
        }
        keys.push(format!("{}:form:{}", self.base, form.unwrap_or("-")));
        keys
    }
}

/// The network a client address counts as: an IPv4 address is itself (also when
/// it arrives IPv4-mapped, `::ffff:a.b.c.d`, from a dual-stack socket); an IPv6
/// address counts as its /64, which one host or one home is given whole, so
/// walking through its addresses is one client, not 2^64.
pub fn client_network(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn pair_key(username: &str, client: IpAddr) -> String {
    let network = client_network(client);
    format!("throttle:login:{{user:{username}}}:from:{network}")
}

fn user_key(username: &str) -> String {
    format!("throttle:login:{{user:{username}}}")
}

fn client_key(client: IpAddr) -> String {
    format!("throttle:login:{{client:{}}}", client_network(client))
}

fn inflight_key(counter: &str) -> String {
    format!("{counter}:inflight")
}

fn register_key(client: IpAddr) -> String {
    format!("throttle:register:{{client:{}}}", client_network(client))
}

fn anonymous_cart_key(client: IpAddr) -> String {
    format!("throttle:anon:{{client:{}}}", client_network(client))
}

/// One slot's answer to begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Go,
    Busy(Duration),
    Spent,
    Refused(Duration),
}

impl Step {
    fn from_script(answer: &[i64]) -> Step {
        let ms = Duration::from_millis(answer.get(1).copied().unwrap_or(1).max(1) as u64);
        match answer.first().copied().unwrap_or(1) {
            0 => Step::Go,
            2 => Step::Spent,
            3 => Step::Refused(ms),
            _ => Step::Busy(ms),
        }
    }
}

impl LoginThrottle {
    pub fn redis(redis: Redis, limits: Limits) -> Self {
        LoginThrottle {
            backend: Backend::Redis(redis),
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
        let mut groups = vec![Group {
            base: client_key(client),
            keys: vec![client_key(client)],
            limits: vec![self.limits.per_client],
            clear_first_on_success: false,
        }];
        if let Some(name) = username {
            groups.push(Group {
                base: user_key(name),
                keys: vec![pair_key(name, client), user_key(name)],
                limits: vec![self.limits.per_user, self.limits.per_user_total],
                clear_first_on_success: true,
            });
        }
        groups
    }

    /// Asks to check a password for `username` (`None` for a name that cannot
    /// exist: it counts against the client address only), sent with the form
    /// `form` (its one-time id, if it had one). Waits up to two seconds for other
    /// attempts in flight that decide whether this one may go.
    pub async fn login_attempt(
        &self,
        username: Option<&str>,
        client: IpAddr,
        form: Option<&str>,
    ) -> Result<LoginVerdict, StoreError> {
        let attempt = Attempt {
            groups: self.login_groups(username, client),
            nonce: crate::token::random(),
            form: form.map(str::to_owned),
        };
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            let steps = self.begin(&attempt).await?;
            if steps.iter().all(|step| *step == Step::Go) {
                return Ok(LoginVerdict::Go(attempt));
            }
            // One slot said no: the others give their lease back.
            if steps.contains(&Step::Go) {
                self.run_finish(&attempt, "abandoned").await?;
            }
            let mut busy = None;
            for step in &steps {
                match *step {
                    Step::Spent => return Ok(LoginVerdict::FormSpent),
                    Step::Refused(wait) => return Ok(LoginVerdict::Wait(wait)),
                    Step::Busy(wait) => busy = busy.max(Some(wait)),
                    Step::Go => {}
                }
            }
            let wait = busy.unwrap_or(BUSY_POLL);
            if Instant::now() + BUSY_POLL >= deadline {
                return Ok(LoginVerdict::Busy(wait));
            }
            tokio::time::sleep(BUSY_POLL.min(wait)).await;
        }
    }

    /// Records how a checked attempt ended. A wrong password must be recorded
    /// before the visitor is told, so an error here is the visitor's error page.
    pub async fn finish(&self, attempt: Attempt, outcome: Outcome) -> Result<(), StoreError> {
        let outcome = match outcome {
            Outcome::Failed => "failed",
            Outcome::Succeeded => "succeeded",
            Outcome::NotChecked => "abandoned",
        };
        self.run_finish(&attempt, outcome).await
    }

    async fn begin(&self, attempt: &Attempt) -> Result<Vec<Step>, StoreError> {
        let lease = self.limits.lease;
        match &self.backend {
            Backend::Redis(redis) => {
                let call = |group: &Group| {
                    let mut args = vec![
                        attempt.nonce.clone(),
                        lease.as_millis().max(1).to_string(),
                        if attempt.form.is_some() { "1" } else { "0" }.to_owned(),
                    ];
                    args.extend(group.limits.iter().map(u32::to_string));
                    let keys = group.script_keys(attempt.form.as_deref());
                    async move {
                        let client = redis.connected(&keys[0])?;
                        let answer = bounded(
                            BEGIN_SCRIPT.evalsha_with_reload::<Vec<i64>, _, _>(&client, keys, args),
                        )
                        .await?;
                        Ok::<_, StoreError>(answer)
                    }
                };
                // Sent together: fred writes both at once on the shared connection.
                let answers = futures_join(
                    attempt
                        .groups
                        .iter()
                        .map(|group| measured(RedisKind::Throttle, call(group))),
                )
                .await;
                answers
                    .into_iter()
                    .map(|answer| Ok(Step::from_script(&answer?)))
                    .collect()
            }
            Backend::Memory(state) => {
                let mut state = state.lock().expect("throttle lock");
                let now = Instant::now();
                state.purge(now);
                Ok(attempt
                    .groups
                    .iter()
                    .map(|group| state.begin(group, attempt, lease, now))
                    .collect())
            }
        }
    }

    async fn run_finish(&self, attempt: &Attempt, outcome: &str) -> Result<(), StoreError> {
        let window = self.limits.window;
        match &self.backend {
            Backend::Redis(redis) => {
                let call = |group: &Group| {
                    let args = vec![
                        attempt.nonce.clone(),
                        outcome.to_owned(),
                        window.as_secs().max(1).to_string(),
                        if group.clear_first_on_success {
                            "1"
                        } else {
                            "0"
                        }
                        .to_owned(),
                    ];
                    let keys = group.script_keys(attempt.form.as_deref());
                    async move {
                        let client = redis.connected(&keys[0])?;
                        bounded(FINISH_SCRIPT.evalsha_with_reload::<i64, _, _>(&client, keys, args))
                            .await
                            .map_err(StoreError::write)
                    }
                };
                for answer in futures_join(attempt.groups.iter().map(call)).await {
                    answer?;
                }
            }
            Backend::Memory(state) => {
                let mut state = state.lock().expect("throttle lock");
                let now = Instant::now();
                for group in &attempt.groups {
                    state.finish(group, attempt, outcome, now + window);
                }
            }
        }
        Ok(())
    }

    /// Counts a registration attempt from `client`.
    pub async fn register_attempt(&self, client: IpAddr) -> Result<Verdict, StoreError> {
        let limits = &self.limits;
        self.count(
            register_key(client),
            limits.register_per_client,
            limits.register_window,
        )
        .await
    }

    /// Counts a new anonymous cart (and the session that holds it) for `client`.
    pub async fn anonymous_cart(&self, client: IpAddr) -> Result<Verdict, StoreError> {
        let limits = &self.limits;
        self.count(
            anonymous_cart_key(client),
            limits.anon_carts_per_client,
            limits.anon_cart_window,
        )
        .await
    }

    /// One more on `key`'s counter for its window; `Wait` once over `limit`.
    async fn count(
        &self,
        key: String,
        limit: u32,
        window: Duration,
    ) -> Result<Verdict, StoreError> {
        let wait: i64 = match &self.backend {
            Backend::Redis(redis) => {
                let args = vec![window.as_secs().max(1).to_string(), limit.to_string()];
                let client = redis.connected(&key)?;
                bounded(COUNT_SCRIPT.evalsha_with_reload::<i64, _, _>(&client, vec![key], args))
                    .await?
            }
            Backend::Memory(state) => {
                let mut state = state.lock().expect("throttle lock");
                let now = Instant::now();
                state.purge(now);
                let entry = state.failures.entry(key).or_insert((0, now + window));
                entry.0 += 1;
                if entry.0 > limit {
                    (entry.1 - now).as_millis().max(1) as i64
                } else {
                    0
                }
            }
        };
        Ok(match wait {
            wait if wait > 0 => Verdict::Wait(Duration::from_millis(wait as u64)),
            _ => Verdict::Allowed,
        })
    }
}

/// Runs the futures at once (at most two here: one per hash slot) and returns
/// their answers in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.map(Box::pin).collect();
    match futures.len() {
        2 => {
            let (b, a) = (futures.pop().unwrap(), futures.pop().unwrap());
            let (a, b) = tokio::join!(a, b);
            vec![a, b]
        }
        _ => {
            let mut answers = Vec::with_capacity(futures.len());
            for future in futures {
                answers.push(future.await);
            }
            answers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_network;

    #[test]
    fn an_ipv6_client_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let net = |ip: &str| client_network(ip.parse().unwrap());
        assert_eq!(net("203.0.113.7"), "203.0.113.7");
        assert_eq!(net("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(net("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(net("2001:db8:1:3::1"), net("2001:db8:1:2::1"));
        assert_eq!(net("::1"), "0:0:0:0::/64");
    }
}
