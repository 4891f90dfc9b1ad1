//! Where carts live: Redis hashes (`cart:user:<id>`, `cart:anon:<cart id>`), field =
//! product id, value = quantity. Or, in dev mode, the same shape in process memory.
//!
//! Why not in the session? The session record is read and written back whole, so
//! two requests that each add an item (two tabs, two replicas) would race and the
//! last save would win. `HINCRBY` on a hash field cannot lose an update.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use fred::prelude::{HashesInterface, Pool};
use fred::types::scripts::Script;

use super::MAX_QUANTITY;

/// Whose cart: a logged-in user's (kept across logouts and devices) or an anonymous visitor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOwner {
    User(i64),
    Anonymous(String),
}

impl CartOwner {
    pub fn redis_key(&self) -> String {
        match self {
            CartOwner::User(id) => format!("cart:user:{id}"),
            CartOwner::Anonymous(id) => format!("cart:anon:{id}"),
        }
    }
}

/// The result of adding to a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The line's quantity now.
    pub quantity: u32,
    /// True when the add would have gone over [`MAX_QUANTITY`] and was capped.
    pub capped: bool,
}

/// The result of changing a line's quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Set,
    Removed,
    /// The line was not in the cart (removed meanwhile, in another tab): nothing changed.
    NotInCart,
}

/// One line of a cart: product id and quantity, in product id order.
pub type Lines = Vec<(i64, u32)>;

#[derive(Debug, Clone)]
pub struct CartStore {
    backend: Backend,
    user_ttl: Duration,
    anonymous_ttl: Duration,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Pool),
    Memory(Arc<Mutex<HashMap<String, BTreeMap<i64, u32>>>>),
}

/// Adds to a line and caps it, in one atomic step. Returns {quantity, capped}.
/// KEYS[1] cart; ARGV: product id, quantity to add, cap, TTL in seconds.
const ADD_LUA: &str = r#"
local quantity = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
local cap = tonumber(ARGV[3])
local capped = 0
if quantity > cap then
  redis.call('HSET', KEYS[1], ARGV[1], cap)
  quantity = cap
  capped = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {quantity, capped}
"#;

/// Sets (or with 0 removes) an existing line. Returns 1 set, 0 removed, -1 not in cart.
/// KEYS[1] cart; ARGV: product id, quantity, TTL in seconds.
const UPDATE_LUA: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if tonumber(ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Moves every line of the anonymous cart into the user's cart (quantities add,
/// capped), then deletes the anonymous cart: all or nothing, no add can slip between.
/// KEYS[1] anonymous cart, KEYS[2] user cart; ARGV: cap, TTL in seconds.
const MERGE_LUA: &str = r#"
local lines = redis.call('HGETALL', KEYS[1])
local cap = tonumber(ARGV[1])
for i = 1, #lines, 2 do
  local quantity = redis.call('HINCRBY', KEYS[2], lines[i], lines[i + 1])
  if quantity > cap then
    redis.call('HSET', KEYS[2], lines[i], cap)
  end
end
if #lines > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[1])
end
return #lines / 2
"#;

// Scripts are sent once per Redis server (`SCRIPT LOAD` on a NOSCRIPT reply), then
// called by their SHA1 with `EVALSHA`.
static ADD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(ADD_LUA));
static UPDATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(UPDATE_LUA));
static MERGE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(MERGE_LUA));

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

    /// Adds `quantity` of a product, capping the line at [`MAX_QUANTITY`].
    pub async fn add(
        &self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
    ) -> anyhow::Result<Added> {
        match &self.backend {
            Backend::Redis(pool) => {
                let (quantity, capped): (u32, u8) = ADD_SCRIPT
                    .evalsha_with_reload(
                        pool.next(),
                        owner.redis_key(),
                        vec![
                            product_id.to_string(),
                            quantity.to_string(),
                            MAX_QUANTITY.to_string(),
                            self.ttl_secs(owner).to_string(),
                        ],
                    )
                    .await?;
                Ok(Added {
                    quantity,
                    capped: capped == 1,
                })
            }
            Backend::Memory(carts) => {
                let mut carts = carts.lock().expect("cart lock");
                let line = carts
                    .entry(owner.redis_key())
                    .or_default()
                    .entry(product_id)
                    .or_default();
                let wanted = *line + quantity;
                *line = wanted.min(MAX_QUANTITY);
                Ok(Added {
                    quantity: *line,
                    capped: wanted > MAX_QUANTITY,
                })
            }
        }
    }

    /// Sets a line's quantity; 0 removes it. Lines not in the cart are left alone.
    pub async fn update(
        &self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
    ) -> anyhow::Result<Updated> {
        match &self.backend {
            Backend::Redis(pool) => {
                let outcome: i64 = UPDATE_SCRIPT
                    .evalsha_with_reload(
                        pool.next(),
                        owner.redis_key(),
                        vec![
                            product_id.to_string(),
                            quantity.to_string(),
                            self.ttl_secs(owner).to_string(),
                        ],
                    )
                    .await?;
                Ok(match outcome {
                    1 => Updated::Set,
                    0 => Updated::Removed,
                    _ => Updated::NotInCart,
                })
            }
            Backend::Memory(carts) => {
                let mut carts = carts.lock().expect("cart lock");
                let Some(cart) = carts.get_mut(&owner.redis_key()) else {
                    return Ok(Updated::NotInCart);
                };
                if !cart.contains_key(&product_id) {
                    return Ok(Updated::NotInCart);
                }
                if quantity == 0 {
                    cart.remove(&product_id);
                    Ok(Updated::Removed)
                } else {
                    cart.insert(product_id, quantity);
                    Ok(Updated::Set)
                }
            }
        }
    }

    /// Every line, in product id order. Fields that are not numbers are ignored.
    pub async fn lines(&self, owner: &CartOwner) -> anyhow::Result<Lines> {
        match &self.backend {
            Backend::Redis(pool) => {
                let raw: HashMap<String, String> = pool.hgetall(owner.redis_key()).await?;
                let mut lines: Lines = raw
                    .into_iter()
                    .filter_map(|(product, quantity)| {
                        Some((product.parse().ok()?, quantity.parse().ok()?))
                    })
                    .filter(|(_, quantity)| *quantity > 0)
                    .collect();
                lines.sort_unstable();
                Ok(lines)
            }
            Backend::Memory(carts) => {
                let carts = carts.lock().expect("cart lock");
                Ok(carts
                    .get(&owner.redis_key())
                    .map(|cart| cart.iter().map(|(p, q)| (*p, *q)).collect())
                    .unwrap_or_default())
            }
        }
    }

    /// Merges an anonymous cart into a user's cart and deletes the anonymous one, atomically.
    pub async fn merge(&self, anonymous_cart_id: &str, user_id: i64) -> anyhow::Result<()> {
        let from = CartOwner::Anonymous(anonymous_cart_id.to_owned()).redis_key();
        let into = CartOwner::User(user_id).redis_key();
        match &self.backend {
            Backend::Redis(pool) => {
                let _moved: i64 = MERGE_SCRIPT
                    .evalsha_with_reload(
                        pool.next(),
                        vec![from, into],
                        vec![
                            MAX_QUANTITY.to_string(),
                            self.user_ttl.as_secs().to_string(),
                        ],
                    )
                    .await?;
                Ok(())
            }
            Backend::Memory(carts) => {
                let mut carts = carts.lock().expect("cart lock");
                let Some(anonymous) = carts.remove(&from) else {
                    return Ok(());
                };
                let cart = carts.entry(into).or_default();
                for (product, quantity) in anonymous {
                    let line = cart.entry(product).or_default();
                    *line = (*line + quantity).min(MAX_QUANTITY);
                }
                Ok(())
            }
        }
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
    /// (or when both are empty).
    pub async fn clear_if_unchanged(
        &self,
        owner: &CartOwner,
        expected: &[(i64, u32)],
    ) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Redis(pool) => {
                let args: Vec<String> = expected
                    .iter()
                    .flat_map(|(product, quantity)| [product.to_string(), quantity.to_string()])
                    .collect();
                let cleared: i64 = CLEAR_IF_UNCHANGED_SCRIPT
                    .evalsha_with_reload(pool.next(), owner.redis_key(), args)
                    .await?;
                Ok(cleared == 1)
            }
            Backend::Memory(carts) => {
                let mut carts = carts.lock().expect("cart lock");
                let key = owner.redis_key();
                let current: Vec<(i64, u32)> = carts
                    .get(&key)
                    .map(|cart| cart.iter().map(|(p, q)| (*p, *q)).collect())
                    .unwrap_or_default();
                let mut wanted = expected.to_vec();
                wanted.sort_unstable();
                if current != wanted {
                    return Ok(false);
                }
                carts.remove(&key);
                Ok(true)
            }
        }
    }
}
