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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::{HashesInterface, KeysInterface};

use super::memory::MemoryCarts;
use super::redis as scripts;
use super::{Added, CartOwner, Cleared, EpochGuard, Guarded, Lines, Updated, MAX_QUANTITY};
use crate::redis::memory::MemoryCounters;
use crate::redis::{bounded, Durability, Redis, StoreError};
use crate::telemetry::metrics::{redis_call as measured, RedisKind};

mod trial;

/// How long an applied submission id is remembered: far longer than anyone retries.
const SUBMISSION_MEMORY: Duration = Duration::from_secs(86_400);
/// At most this many remembered submission ids per cart (the oldest go first).
const SUBMISSIONS_KEPT: u32 = 500;

#[derive(Debug, Clone)]
pub struct CartStore {
    backend: Backend,
    user_ttl: Duration,
    anonymous_ttl: Duration,
    /// How long a new visitor's cart lives until they come back ([`Self::on_trial`]).
    trial_ttl: Duration,
    /// How long applied submission ids are remembered ([`SUBMISSION_MEMORY`], or
    /// less on trial).
    submission_memory: Duration,
    /// What each write must reach before it is acknowledged.
    durability: Durability,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Redis),
    Memory {
        carts: Arc<Mutex<MemoryCarts>>,
        /// The credential epochs, shared with the session index: the epoch guard
        /// is checked here as the cart scripts check it in Redis.
        counters: MemoryCounters,
    },
}

/// In memory, what a cart script's epoch check answers: `Stale` when the user's
/// epoch is past the session's.
fn stale_in_memory<T>(counters: &MemoryCounters, guard: Option<&EpochGuard>) -> Option<Guarded<T>> {
    let guard = guard?;
    let current = counters.get(&guard.key);
    (current > guard.session_epoch).then_some(Guarded::Stale(current))
}

/// Appends an epoch guard's key and epoch (the scripts' optional KEYS[4] and last ARGV).
fn with_epoch_guard(keys: &mut Vec<String>, args: &mut Vec<String>, epoch: Option<&EpochGuard>) {
    if let Some(guard) = epoch {
        keys.push(guard.key.clone());
        args.push(guard.session_epoch.to_string());
    }
}

impl CartStore {
    pub fn redis(redis: Redis, user_ttl: Duration, anonymous_ttl: Duration) -> Self {
        CartStore {
            backend: Backend::Redis(redis),
            user_ttl,
            anonymous_ttl,
            trial_ttl: anonymous_ttl,
            submission_memory: SUBMISSION_MEMORY,
            durability: Durability::primary(),
        }
    }

    /// Acknowledges a write only once `durability` holds (`WAIT`, see
    /// [`Durability`]); unconfirmed, it is "could not confirm".
    pub fn confirmed_by(self, durability: Durability) -> Self {
        CartStore { durability, ..self }
    }

    /// In process memory, checking epoch guards against `counters` (the session
    /// index's epochs).
    pub fn memory(user_ttl: Duration, anonymous_ttl: Duration, counters: MemoryCounters) -> Self {
        CartStore {
            backend: Backend::Memory {
                carts: Arc::default(),
                counters,
            },
            user_ttl,
            anonymous_ttl,
            trial_ttl: anonymous_ttl,
            submission_memory: SUBMISSION_MEMORY,
            durability: Durability::primary(),
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
            self.submission_memory.as_secs().to_string(),
            SUBMISSIONS_KEPT.to_string(),
        ];
        (keys, args)
    }

    /// Adds `quantity` of a product, capping the line at [`MAX_QUANTITY`], unless
    /// `submission` was applied before or the cart was retired by a login merge.
    ///
    /// With an `epoch` guard, a session older than its user's
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
            Backend::Redis(redis) => {
                let (mut keys, mut args) = self.guarded(owner, submission);
                args.extend([
                    product_id.to_string(),
                    quantity.to_string(),
                    MAX_QUANTITY.to_string(),
                    self.ttl_secs(owner).to_string(),
                ]);
                with_epoch_guard(&mut keys, &mut args, epoch);
                let add = async {
                    let client = redis.connected(&keys[0])?;
                    self.durability
                        .script(&scripts::ADD_SCRIPT, &client, keys, args)
                        .await
                };
                let (quantity, capped): (i64, i64) = measured(RedisKind::Cart, add).await?;
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
            Backend::Memory { carts, counters } => {
                if let Some(stale) = stale_in_memory(counters, epoch) {
                    return Ok(stale);
                }
                Ok(Guarded::Done(
                    carts
                        .lock()
                        .expect("cart lock")
                        .add(owner, product_id, quantity, submission),
                ))
            }
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
            Backend::Redis(redis) => {
                let (mut keys, mut args) = self.guarded(owner, submission);
                args.extend([
                    product_id.to_string(),
                    quantity.to_string(),
                    self.ttl_secs(owner).to_string(),
                ]);
                with_epoch_guard(&mut keys, &mut args, epoch);
                let (outcome, current_epoch): (i64, i64) = self
                    .durability
                    .script(
                        &scripts::UPDATE_SCRIPT,
                        &redis.connected(&keys[0])?,
                        keys,
                        args,
                    )
                    .await?;
                Ok(match outcome {
                    -4 => Guarded::Stale(current_epoch),
                    1 => Guarded::Done(Updated::Set),
                    0 => Guarded::Done(Updated::Removed),
                    -1 => Guarded::Done(Updated::AlreadyApplied),
                    -2 => Guarded::Done(Updated::CartRetired),
                    _ => Guarded::Done(Updated::NotInCart),
                })
            }
            Backend::Memory { carts, counters } => {
                if let Some(stale) = stale_in_memory(counters, epoch) {
                    return Ok(stale);
                }
                Ok(Guarded::Done(
                    carts
                        .lock()
                        .expect("cart lock")
                        .update(owner, product_id, quantity, submission),
                ))
            }
        }
    }

    /// Every line, in product id order. Fields that are not numbers are ignored.
    pub async fn lines(&self, owner: &CartOwner) -> Result<Lines, StoreError> {
        match &self.backend {
            Backend::Redis(redis) => {
                let key = owner.redis_key();
                let raw: HashMap<String, String> =
                    bounded(redis.connected(&key)?.hgetall(key)).await?;
                Ok(parse_lines(raw))
            }
            Backend::Memory { carts, .. } => {
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
    /// its lines to the user's cart once. Returns how many units (the quantities
    /// added up) this call added; 0 when an earlier try of the same login did.
    ///
    /// Called before the login's new session replaces the old one, so a login
    /// retried after a failure between the steps finds the same taken lines and
    /// finishes the job, and the user's merge marker keeps them from being added twice.
    pub async fn merge(&self, anonymous_cart_id: &str, user_id: i64) -> Result<usize, StoreError> {
        let from = CartOwner::Anonymous(anonymous_cart_id.to_owned());
        let into = CartOwner::User(user_id);
        match &self.backend {
            Backend::Redis(redis) => {
                let (flat, submissions): (Vec<String>, Vec<String>) = self
                    .durability
                    .script(
                        &scripts::TAKE_SCRIPT,
                        &redis.connected(&from.redis_key())?,
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
                    .await?;
                let lines = parse_lines(flat.chunks_exact(2).map(|pair| (&pair[0], &pair[1])));
                let mut args = vec![
                    anonymous_cart_id.to_owned(),
                    MAX_QUANTITY.to_string(),
                    self.user_ttl.as_secs().to_string(),
                    SUBMISSION_MEMORY.as_secs().to_string(),
                    lines.len().to_string(),
                ];
                args.extend(lines.iter().map(|(product, _)| product.to_string()));
                args.extend(lines.iter().map(|(_, quantity)| quantity.to_string()));
                args.extend(submissions);
                let merged: i64 = self
                    .durability
                    .script(
                        &scripts::APPLY_SCRIPT,
                        &redis.connected(&into.redis_key())?,
                        vec![into.redis_key(), into.merged_key(), into.submissions_key()],
                        args,
                    )
                    .await?;
                // The lines are in the user's cart now; if this DEL is lost, they
                // expire with the anonymous cart's TTL and the marker stops a re-apply.
                let _: i64 = bounded(redis.connected(&from.moving_key())?.del(from.moving_key()))
                    .await
                    .map_err(StoreError::write)?;
                let units = lines.iter().map(|(_, quantity)| *quantity as usize).sum();
                Ok(if merged < 0 { 0 } else { units })
            }
            Backend::Memory { carts, .. } => {
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
                Ok(anonymous.values().map(|quantity| *quantity as usize).sum())
            }
        }
    }

    /// [`Self::lines`] plus the integer in `counter_key` (same hash slot as the
    /// cart), in one Redis command.
    pub async fn lines_and_counter(
        &self,
        owner: &CartOwner,
        counter_key: &str,
    ) -> Result<(Lines, i64), StoreError> {
        let redis = match &self.backend {
            Backend::Redis(redis) => redis,
            Backend::Memory { counters, .. } => {
                return Ok((self.lines(owner).await?, counters.get(counter_key)))
            }
        };
        let read = async {
            let key = owner.redis_key();
            let client = redis.connected(&key)?;
            bounded(scripts::LINES_AND_COUNTER_SCRIPT.evalsha_with_reload(
                &client,
                vec![key, counter_key.to_owned()],
                Vec::<String>::new(),
            ))
            .await
            .map_err(StoreError::from)
        };
        let (raw, counter): (Vec<String>, i64) = measured(RedisKind::Cart, read).await?;
        let lines = parse_lines(raw.chunks_exact(2).map(|pair| (&pair[0], &pair[1])));
        Ok((lines, counter))
    }

    /// Deletes a cart (an account was deleted).
    pub async fn delete_cart(&self, owner: &CartOwner) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redis(redis) => {
                let _: i64 =
                    bounded(redis.connected(&owner.redis_key())?.del(owner.redis_key())).await?;
            }
            Backend::Memory { carts, .. } => {
                carts
                    .lock()
                    .expect("cart lock")
                    .carts
                    .remove(&owner.redis_key());
            }
        }
        Ok(())
    }

    /// Empties the cart an order was placed from, if its lines are still exactly
    /// `expected`, and at most once per order (`submission`, the checkout form's
    /// id, remembered in the same step): a late replay of the form never empties
    /// lines added after the order. One hash slot.
    pub async fn clear_for_order(
        &self,
        owner: &CartOwner,
        submission: &str,
        expected: &[(i64, u32)],
    ) -> Result<Cleared, StoreError> {
        match &self.backend {
            Backend::Redis(redis) => {
                let mut args = vec![
                    submission.to_owned(),
                    SUBMISSION_MEMORY.as_secs().to_string(),
                    SUBMISSIONS_KEPT.to_string(),
                ];
                args.extend(
                    expected.iter().flat_map(|(product, quantity)| {
                        [product.to_string(), quantity.to_string()]
                    }),
                );
                let cleared: i64 = self
                    .durability
                    .script(
                        &scripts::CLEAR_FOR_ORDER_SCRIPT,
                        &redis.connected(&owner.redis_key())?,
                        vec![owner.redis_key(), owner.submissions_key()],
                        args,
                    )
                    .await?;
                Ok(match cleared {
                    1 => Cleared::Emptied,
                    2 => Cleared::AlreadyDone,
                    _ => Cleared::Kept,
                })
            }
            Backend::Memory { carts, .. } => Ok(carts
                .lock()
                .expect("cart lock")
                .clear_for_order(owner, submission, expected)),
        }
    }
}

/// A cart's `(product, quantity)` fields as lines, in product id order.
fn parse_lines<S: AsRef<str>>(raw: impl IntoIterator<Item = (S, S)>) -> Lines {
    let mut lines: Lines = raw
        .into_iter()
        .filter_map(|(product, quantity)| {
            Some((
                product.as_ref().parse().ok()?,
                quantity.as_ref().parse().ok()?,
            ))
        })
        .filter(|(_, quantity)| *quantity > 0)
        .collect();
    lines.sort_unstable();
    lines
}

#[cfg(test)]
mod key_table_tests {
    use crate::cart::CartOwner;

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
