//! Where carts live: Redis hashes (`cart:{u<id>}`, `cart:{a<cart id>}`), field =
//! product id, value = quantity. Or, in dev mode, the same shape in process memory.
//!
//! Why not in the session? The session record is read and written back whole, so
//! two requests that each add an item (two tabs, two replicas) would race and the
//! last save would win. `HINCRBY` on a hash field cannot lose an update.
//!
//! Every key of one cart shares a hash tag (`{u42}`, `{a<cart id>}`), so each Lua
//! script below touches one Redis Cluster slot. This module is the only place
//! that spells these keys:
//!
//! | key | what |
//! |---|---|
//! | `cart:{u<id>}` / `cart:{a<id>}` | the cart: product id → quantity |
//! | `subs:{u<id>}` / `subs:{a<id>}` | one-time submission ids already applied (sorted set, score = unix time) |
//! | `cart:{a<id>}:retired` | the user id an anonymous cart was merged into: later writes to it are refused |
//! | `cart:{a<id>}:moving` | an anonymous cart's lines between the two steps of the login merge |
//! | `cart:{u<id>}:merged` | anonymous carts already applied to this user's cart (sorted set) |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use fred::prelude::{HashesInterface, Pool};
use fred::types::scripts::Script;
use time::OffsetDateTime;

use super::MAX_QUANTITY;
use crate::redis::{connected, StoreError};

/// Whose cart: a logged-in user's (kept across logouts and devices) or an anonymous visitor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOwner {
    User(i64),
    Anonymous(String),
}

impl CartOwner {
    /// The hash tag every key of this cart carries (one Redis Cluster slot per cart).
    fn tag(&self) -> String {
        match self {
            CartOwner::User(id) => format!("{{u{id}}}"),
            CartOwner::Anonymous(id) => format!("{{a{id}}}"),
        }
    }

    pub fn redis_key(&self) -> String {
        format!("cart:{}", self.tag())
    }

    /// Submission ids already applied to this cart.
    fn submissions_key(&self) -> String {
        format!("subs:{}", self.tag())
    }

    /// Set on an anonymous cart once the login merge has taken it.
    fn retired_key(&self) -> String {
        format!("cart:{}:retired", self.tag())
    }

    fn moving_key(&self) -> String {
        format!("cart:{}:moving", self.tag())
    }

    fn merged_key(&self) -> String {
        format!("cart:{}:merged", self.tag())
    }
}

/// The result of adding to a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Applied {
        /// The line's quantity now.
        quantity: u32,
        /// True when the add would have gone over [`MAX_QUANTITY`] and was capped.
        capped: bool,
    },
    /// This submission id was applied before: nothing changed.
    AlreadyApplied,
    /// The anonymous cart was merged into a user's cart meanwhile (the visitor
    /// logged in on another tab or replica): nothing changed.
    CartRetired,
}

/// The result of changing a line's quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Set,
    Removed,
    /// The line was not in the cart (removed meanwhile, in another tab): nothing changed.
    NotInCart,
    AlreadyApplied,
    CartRetired,
}

/// Why the in-memory carts refuse a change before looking at it (what
/// `GUARD_LUA`'s -1 and -2 say in Redis); both changes answer it the same way.
#[derive(Debug, Clone, Copy)]
enum Refused {
    AlreadyApplied,
    CartRetired,
}

impl From<Refused> for Added {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::AlreadyApplied => Added::AlreadyApplied,
            Refused::CartRetired => Added::CartRetired,
        }
    }
}

impl From<Refused> for Updated {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::AlreadyApplied => Updated::AlreadyApplied,
            Refused::CartRetired => Updated::CartRetired,
        }
    }
}

/// A cart change sent with an [`EpochGuard`]: done (with the change's own answer),
/// or refused because the session is older than its user's credential epoch —
/// nothing changed, and the current epoch is given to settle the session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded<T> {
    Done(T),
    Stale(i64),
}

/// A logged-in session's claim to write to its user's cart: the write's own script
/// checks the user's credential epoch (same hash slot as the cart), so a cart
/// change costs no separate epoch read, and a password change or "sign out
/// everywhere" cannot slip in between the check and the write.
#[derive(Debug, Clone)]
pub struct EpochGuard {
    /// The user's epoch key (`session::index::epoch_key`).
    pub key: String,
    /// The epoch the session was created in: the write is refused if the user's is higher.
    pub session_epoch: i64,
}

/// One line of a cart: product id and quantity, in product id order.
pub type Lines = Vec<(i64, u32)>;

/// How long an applied submission id is remembered: far longer than anyone retries.
const SUBMISSION_MEMORY: Duration = Duration::from_secs(86_400);
/// At most this many remembered submission ids per cart (the oldest go first).
const SUBMISSIONS_KEPT: u32 = 500;

#[derive(Debug, Clone)]
pub struct CartStore {
    backend: Backend,
    user_ttl: Duration,
    anonymous_ttl: Duration,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Pool),
    Memory(Arc<Mutex<MemoryCarts>>),
}

/// The dev twin of the Redis keys above.
#[derive(Debug, Default)]
struct MemoryCarts {
    carts: HashMap<String, BTreeMap<i64, u32>>,
    submissions: HashMap<String, HashSet<String>>,
    retired: HashSet<String>,
}

// The scripts share one preamble: KEYS[1] cart, KEYS[2] submissions, KEYS[3] the
// retired marker; ARGV[1] the submission id ('' for none). A repeated submission
// or a retired cart changes nothing. With an `EpochGuard`, KEYS[4] is the user's
// epoch key and the last ARGV the session's epoch: a stale session changes nothing
// either, and is told the current epoch.
const GUARD_LUA: &str = r#"
if KEYS[4] then
  local current = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if current > tonumber(ARGV[#ARGV]) then
    return {-4, current}
  end
end
local submission = ARGV[1]
if submission ~= '' and redis.call('ZSCORE', KEYS[2], submission) then
  return {-1, 0}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {-2, 0}
end
"#;

// Remembers the submission id (ARGV[1]) with the time (ARGV[2]), forgetting old ones.
// ARGV[3] how long to remember, ARGV[4] how many to keep.
const REMEMBER_LUA: &str = r#"
local function remember()
  if submission == '' then return end
  local now = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[2], now, submission)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
"#;

/// Adds to a line and caps it, in one atomic step. Returns {quantity, capped},
/// or {-1, 0} for a repeated submission, {-2, 0} for a retired cart.
/// ARGV[5..]: product id, quantity to add, cap, TTL in seconds.
const ADD_BODY_LUA: &str = r#"
local quantity = redis.call('HINCRBY', KEYS[1], ARGV[5], ARGV[6])
local cap = tonumber(ARGV[7])
local capped = 0
if quantity > cap then
  redis.call('HSET', KEYS[1], ARGV[5], cap)
  quantity = cap
  capped = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[8])
remember()
return {quantity, capped}
"#;

/// Sets (or with 0 removes) an existing line. Returns {1} set, {0} removed,
/// {-3} not in cart, or the guard's answers. ARGV[5..]: product id, quantity, TTL.
const UPDATE_BODY_LUA: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[5]) == 0 then
  return {-3, 0}
end
if tonumber(ARGV[6]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[5])
else
  redis.call('HSET', KEYS[1], ARGV[5], ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
remember()
if tonumber(ARGV[6]) == 0 then return {0, 0} end
return {1, 0}
"#;

/// Login merge, step 1, in the anonymous cart's slot: retire the cart (later
/// writes to it are refused) and move its lines aside, where they stay until step
/// 2 is done. Running it again returns the same lines, so a login retried after a
/// crash between the steps neither loses nor doubles anything.
/// KEYS: cart, moving, retired, submissions; ARGV: user id, TTL.
/// Returns {lines (flat field/value list), submission ids}.
const TAKE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {redis.call('HGETALL', KEYS[2]), redis.call('ZRANGE', KEYS[4], 0, -1)}
"#;

/// Login merge, step 2, in the user's slot: add the taken lines (capped) unless
/// this anonymous cart was applied before, and remember its submission ids.
/// KEYS: cart, merged, submissions; ARGV: anonymous cart id, cap, cart TTL, now,
/// submission memory, number of lines n, then n product ids, n quantities, then
/// submission ids. Returns the number of lines merged, or -1 if already merged.
const APPLY_LUA: &str = r#"
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return -1
end
local cap = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local n = tonumber(ARGV[6])
for i = 1, n do
  local product = ARGV[6 + i]
  local quantity = redis.call('HINCRBY', KEYS[1], product, ARGV[6 + n + i])
  if quantity > cap then
    redis.call('HSET', KEYS[1], product, cap)
  end
end
if n > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
for i = 7 + 2 * n, #ARGV do
  redis.call('ZADD', KEYS[3], now, ARGV[i])
end
if #ARGV >= 7 + 2 * n then
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return n
"#;

// Scripts are sent once per Redis server (`SCRIPT LOAD` on a NOSCRIPT reply), then
// called by their SHA1 with `EVALSHA`.
static ADD_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(format!("{GUARD_LUA}{REMEMBER_LUA}{ADD_BODY_LUA}")));
static UPDATE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(format!("{GUARD_LUA}{REMEMBER_LUA}{UPDATE_BODY_LUA}")));
static TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(TAKE_LUA));
static APPLY_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(APPLY_LUA));

/// Appends an epoch guard's key and epoch (the scripts' optional KEYS[4] and last ARGV).
fn with_epoch_guard(keys: &mut Vec<String>, args: &mut Vec<String>, epoch: Option<&EpochGuard>) {
    if let Some(guard) = epoch {
        keys.push(guard.key.clone());
        args.push(guard.session_epoch.to_string());
    }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl CartStore {
    pub fn redis(pool: Pool, user_ttl: Duration, anonymous_ttl: Duration) -> Self {
        CartStore {
            backend: Backend::Redis(pool),
            user_ttl,
            anonymous_ttl,
        }
    }

    pub fn memory(user_ttl: Duration, anonymous_ttl: Duration) -> Self {
        CartStore {
            backend: Backend::Memory(Arc::default()),
            user_ttl,
            anonymous_ttl,
        }
    }

    fn ttl_secs(&self, owner: &CartOwner) -> u64 {
        match owner {
            CartOwner::User(_) => self.user_ttl.as_secs(),
            CartOwner::Anonymous(_) => self.anonymous_ttl.as_secs(),
        }
    }

    /// The keys and leading arguments every guarded cart script takes.
    fn guarded(&self, owner: &CartOwner, submission: Option<&str>) -> (Vec<String>, Vec<String>) {
        let keys = vec![
            owner.redis_key(),
            owner.submissions_key(),
            owner.retired_key(),
        ];
        let args = vec![
            submission.unwrap_or_default().to_owned(),
            now_unix().to_string(),
            SUBMISSION_MEMORY.as_secs().to_string(),
            SUBMISSIONS_KEPT.to_string(),
        ];
        (keys, args)
    }

    /// Adds `quantity` of a product, capping the line at [`MAX_QUANTITY`], unless
    /// `submission` was applied before or the cart was retired by a login merge.
    ///
    /// With an `epoch` guard (Redis only), a session older than its user's
    /// credential epoch changes nothing ([`Guarded::Stale`]).
    pub async fn add(
        &self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
        submission: Option<&str>,
        epoch: Option<&EpochGuard>,
    ) -> Result<Guarded<Added>, StoreError> {
        match &self.backend {
            Backend::Redis(pool) => {
                let (mut keys, mut args) = self.guarded(owner, submission);
                args.extend([
                    product_id.to_string(),
                    quantity.to_string(),
                    MAX_QUANTITY.to_string(),
                    self.ttl_secs(owner).to_string(),
                ]);
                with_epoch_guard(&mut keys, &mut args, epoch);
                let (quantity, capped): (i64, i64) = ADD_SCRIPT
                    .evalsha_with_reload(connected(pool)?, keys, args)
                    .await
                    .map_err(StoreError::write)?;
                Ok(match quantity {
                    -4 => Guarded::Stale(capped),
                    -1 => Guarded::Done(Added::AlreadyApplied),
                    -2 => Guarded::Done(Added::CartRetired),
                    quantity => Guarded::Done(Added::Applied {
                        quantity: u32::try_from(quantity).unwrap_or(0),
                        capped: capped == 1,
                    }),
                })
            }
            Backend::Memory(carts) => Ok(Guarded::Done(
                carts
                    .lock()
                    .expect("cart lock")
                    .add(owner, product_id, quantity, submission),
            )),
        }
    }

    /// Sets a line's quantity; 0 removes it. Lines not in the cart are left alone.
    /// The `epoch` guard as for [`Self::add`].
    pub async fn update(
        &self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
        submission: Option<&str>,
        epoch: Option<&EpochGuard>,
    ) -> Result<Guarded<Updated>, StoreError> {
        match &self.backend {
            Backend::Redis(pool) => {
                let (mut keys, mut args) = self.guarded(owner, submission);
                args.extend([
                    product_id.to_string(),
                    quantity.to_string(),
                    self.ttl_secs(owner).to_string(),
                ]);
                with_epoch_guard(&mut keys, &mut args, epoch);
                let (outcome, current_epoch): (i64, i64) = UPDATE_SCRIPT
                    .evalsha_with_reload(connected(pool)?, keys, args)
                    .await
                    .map_err(StoreError::write)?;
                Ok(match outcome {
                    -4 => Guarded::Stale(current_epoch),
                    1 => Guarded::Done(Updated::Set),
                    0 => Guarded::Done(Updated::Removed),
                    -1 => Guarded::Done(Updated::AlreadyApplied),
                    -2 => Guarded::Done(Updated::CartRetired),
                    _ => Guarded::Done(Updated::NotInCart),
                })
            }
            Backend::Memory(carts) => Ok(Guarded::Done(
                carts
                    .lock()
                    .expect("cart lock")
                    .update(owner, product_id, quantity, submission),
            )),
        }
    }

    /// Every line, in product id order. Fields that are not numbers are ignored.
    pub async fn lines(&self, owner: &CartOwner) -> Result<Lines, StoreError> {
        match &self.backend {
            Backend::Redis(pool) => {
                let raw: HashMap<String, String> =
                    connected(pool)?.hgetall(owner.redis_key()).await?;
                Ok(parse_lines(raw))
            }
            Backend::Memory(carts) => {
                let carts = carts.lock().expect("cart lock");
                Ok(carts
                    .carts
                    .get(&owner.redis_key())
                    .map(|cart| cart.iter().map(|(p, q)| (*p, *q)).collect())
                    .unwrap_or_default())
            }
        }
    }

    /// Merges an anonymous cart into a user's cart, in two idempotent steps (one
    /// Redis Cluster slot each): take the anonymous cart and retire it, then apply
    /// its lines to the user's cart once. Returns how many lines were merged.
    ///
    /// Called before the login's new session replaces the old one, so a login
    /// retried after a failure between the steps finds the same taken lines and
    /// finishes the job, and the user's merge marker keeps them from being added twice.
    pub async fn merge(&self, anonymous_cart_id: &str, user_id: i64) -> Result<usize, StoreError> {
        let from = CartOwner::Anonymous(anonymous_cart_id.to_owned());
        let into = CartOwner::User(user_id);
        match &self.backend {
            Backend::Redis(pool) => {
                let (flat, submissions): (Vec<String>, Vec<String>) = TAKE_SCRIPT
                    .evalsha_with_reload(
                        connected(pool)?,
                        vec![
                            from.redis_key(),
                            from.moving_key(),
                            from.retired_key(),
                            from.submissions_key(),
                        ],
                        vec![
                            user_id.to_string(),
                            self.anonymous_ttl.as_secs().to_string(),
                        ],
                    )
                    .await
                    .map_err(StoreError::write)?;
                let lines = parse_lines(
                    flat.chunks_exact(2)
                        .map(|pair| (pair[0].clone(), pair[1].clone()))
                        .collect(),
                );
                let mut args = vec![
                    anonymous_cart_id.to_owned(),
                    MAX_QUANTITY.to_string(),
                    self.user_ttl.as_secs().to_string(),
                    now_unix().to_string(),
                    SUBMISSION_MEMORY.as_secs().to_string(),
                    lines.len().to_string(),
                ];
                args.extend(lines.iter().map(|(product, _)| product.to_string()));
                args.extend(lines.iter().map(|(_, quantity)| quantity.to_string()));
                args.extend(submissions);
                let merged: i64 = APPLY_SCRIPT
                    .evalsha_with_reload(
                        pool.next(),
                        vec![into.redis_key(), into.merged_key(), into.submissions_key()],
                        args,
                    )
                    .await
                    .map_err(StoreError::write)?;
                // The lines are in the user's cart now; if this DEL is lost, they
                // expire with the anonymous cart's TTL and the marker stops a re-apply.
                let _: i64 = fred::prelude::KeysInterface::del(pool, from.moving_key())
                    .await
                    .map_err(StoreError::write)?;
                Ok(usize::try_from(merged).unwrap_or(0))
            }
            Backend::Memory(carts) => {
                let mut carts = carts.lock().expect("cart lock");
                carts.retired.insert(from.redis_key());
                let submissions = carts
                    .submissions
                    .remove(&from.redis_key())
                    .unwrap_or_default();
                carts
                    .submissions
                    .entry(into.redis_key())
                    .or_default()
                    .extend(submissions);
                let Some(anonymous) = carts.carts.remove(&from.redis_key()) else {
                    return Ok(0);
                };
                let cart = carts.carts.entry(into.redis_key()).or_default();
                for (product, quantity) in &anonymous {
                    let line = cart.entry(*product).or_default();
                    *line = (*line + quantity).min(MAX_QUANTITY);
                }
                Ok(anonymous.len())
            }
        }
    }
}

impl MemoryCarts {
    /// [`CartStore::add`] in memory (no epoch guard: the dev twin checks the user
    /// the plain way, `ShopSession::user`).
    fn add(
        &mut self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
        submission: Option<&str>,
    ) -> Added {
        if let Some(refused) = self.guard(owner, submission) {
            return refused.into();
        }
        let line = self
            .carts
            .entry(owner.redis_key())
            .or_default()
            .entry(product_id)
            .or_default();
        let wanted = *line + quantity;
        *line = wanted.min(MAX_QUANTITY);
        let quantity = *line;
        self.remember(owner, submission);
        Added::Applied {
            quantity,
            capped: wanted > MAX_QUANTITY,
        }
    }

    /// [`CartStore::update`] in memory.
    fn update(
        &mut self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
        submission: Option<&str>,
    ) -> Updated {
        if let Some(refused) = self.guard(owner, submission) {
            return refused.into();
        }
        let Some(cart) = self.carts.get_mut(&owner.redis_key()) else {
            return Updated::NotInCart;
        };
        if !cart.contains_key(&product_id) {
            return Updated::NotInCart;
        }
        let outcome = if quantity == 0 {
            cart.remove(&product_id);
            Updated::Removed
        } else {
            cart.insert(product_id, quantity);
            Updated::Set
        };
        self.remember(owner, submission);
        outcome
    }

    /// The in-memory twin of `GUARD_LUA`: why a change is refused, if it is.
    fn guard(&self, owner: &CartOwner, submission: Option<&str>) -> Option<Refused> {
        let key = owner.redis_key();
        if let Some(id) = submission.filter(|s| !s.is_empty()) {
            if self.submissions.get(&key).is_some_and(|s| s.contains(id)) {
                return Some(Refused::AlreadyApplied);
            }
        }
        self.retired.contains(&key).then_some(Refused::CartRetired)
    }

    fn remember(&mut self, owner: &CartOwner, submission: Option<&str>) {
        if let Some(id) = submission.filter(|s| !s.is_empty()) {
            self.submissions
                .entry(owner.redis_key())
                .or_default()
                .insert(id.to_owned());
        }
    }
}

fn parse_lines(raw: HashMap<String, String>) -> Lines {
    let mut lines: Lines = raw
        .into_iter()
        .filter_map(|(product, quantity)| Some((product.parse().ok()?, quantity.parse().ok()?)))
        .filter(|(_, quantity)| *quantity > 0)
        .collect();
    lines.sort_unstable();
    lines
}

/// The cart's lines and an integer key of the same hash slot, in one step: the
/// page layout reads the user's cart and credential epoch with one command.
/// KEYS[1] cart, KEYS[2] counter. Returns {HGETALL of the cart, counter or 0}.
const LINES_AND_COUNTER_LUA: &str = r#"
local lines = redis.call('HGETALL', KEYS[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
return {lines, counter}
"#;
static LINES_AND_COUNTER_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(LINES_AND_COUNTER_LUA));

impl CartStore {
    /// [`Self::lines`] plus the integer in `counter_key` (same hash slot as the
    /// cart), in one Redis command. `None` for the counter in memory mode: the
    /// caller reads it its own way.
    pub async fn lines_and_counter(
        &self,
        owner: &CartOwner,
        counter_key: &str,
    ) -> Result<(Lines, Option<i64>), StoreError> {
        let Backend::Redis(pool) = &self.backend else {
            return Ok((self.lines(owner).await?, None));
        };
        let (raw, counter): (Vec<String>, i64) = LINES_AND_COUNTER_SCRIPT
            .evalsha_with_reload(
                connected(pool)?,
                vec![owner.redis_key(), counter_key.to_owned()],
                Vec::<String>::new(),
            )
            .await?;
        let lines = parse_lines(
            raw.chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        );
        Ok((lines, Some(counter)))
    }

    /// Deletes a cart (an account was deleted).
    pub async fn delete_cart(&self, owner: &CartOwner) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redis(pool) => {
                let _: i64 = fred::prelude::KeysInterface::del(pool, owner.redis_key()).await?;
            }
            Backend::Memory(carts) => {
                carts
                    .lock()
                    .expect("cart lock")
                    .carts
                    .remove(&owner.redis_key());
            }
        }
        Ok(())
    }
}

// ---- Checkout (orders): empty the cart once its order is placed. ----

/// Deletes the cart only if it holds exactly the expected lines: an order empties
/// the cart it was placed from, never lines added after (another tab, another
/// device). Repeating it is harmless, so a retried checkout can call it again.
/// KEYS[1] cart; ARGV: product id, quantity, product id, quantity, …
/// Returns 1 deleted, 0 the cart differs (left alone).
const CLEAR_IF_UNCHANGED_LUA: &str = r#"
if redis.call('HLEN', KEYS[1]) ~= #ARGV / 2 then
  return 0
end
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
    return 0
  end
end
redis.call('DEL', KEYS[1])
return 1
"#;

static CLEAR_IF_UNCHANGED_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(CLEAR_IF_UNCHANGED_LUA));

impl CartStore {
    /// Empties the cart if its lines are still exactly `expected`; true when it did
    /// (or when both are empty). One key, so one hash slot.
    pub async fn clear_if_unchanged(
        &self,
        owner: &CartOwner,
        expected: &[(i64, u32)],
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redis(pool) => {
                let args: Vec<String> = expected
                    .iter()
                    .flat_map(|(product, quantity)| [product.to_string(), quantity.to_string()])
                    .collect();
                let cleared: i64 = CLEAR_IF_UNCHANGED_SCRIPT
                    .evalsha_with_reload(connected(pool)?, owner.redis_key(), args)
                    .await
                    .map_err(StoreError::write)?;
                Ok(cleared == 1)
            }
            Backend::Memory(carts) => {
                let mut carts = carts.lock().expect("cart lock");
                let key = owner.redis_key();
                let current: Vec<(i64, u32)> = carts
                    .carts
                    .get(&key)
                    .map(|cart| cart.iter().map(|(p, q)| (*p, *q)).collect())
                    .unwrap_or_default();
                let mut wanted = expected.to_vec();
                wanted.sort_unstable();
                if current != wanted {
                    return Ok(false);
                }
                carts.carts.remove(&key);
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod key_table_tests {
    use super::CartOwner;

    /// The README's key table names every key this module spells.
    #[test]
    fn the_readme_key_table_matches_the_cart_keys() {
        let readme = include_str!("../../README.md");
        let user = CartOwner::User(7);
        let anonymous = CartOwner::Anonymous("abc".into());
        for (key, documented) in [
            (user.redis_key(), "`cart:{u<id>}`"),
            (anonymous.redis_key(), "`cart:{a<cart id>}`"),
            (user.submissions_key(), "`subs:{u<id>}`"),
            (anonymous.submissions_key(), "`subs:{a<cart id>}`"),
            (anonymous.retired_key(), "`cart:{a<cart id>}:retired`"),
            (anonymous.moving_key(), "`cart:{a<cart id>}:moving`"),
            (user.merged_key(), "`cart:{u<id>}:merged`"),
        ] {
            assert!(readme.contains(documented), "README lacks {documented}");
            let shape = documented
                .trim_matches('`')
                .replace("<id>", "7")
                .replace("<cart id>", "abc");
            assert_eq!(key, shape);
        }
    }
}
