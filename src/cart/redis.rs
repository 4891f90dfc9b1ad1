//! The carts' Lua scripts: each change to a cart, with its one-time id check and
//! its credential-epoch check, is one atomic step in the cart's own hash slot.

use std::sync::LazyLock;

use fred::types::scripts::Script;

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

// Remembers the submission id (ARGV[1]) with the time, forgetting old ones.
// ARGV[2] how long to remember (seconds), ARGV[3] how many to keep. The time is
// Redis's own (`TIME`), never a replica's: a replica whose clock runs days fast
// must not make the others forget what they applied.
const REMEMBER_LUA: &str = r#"
local function remember()
  if submission == '' then return end
  local now = tonumber(redis.call('TIME')[1])
  redis.call('ZADD', KEYS[2], now, submission)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
"#;

/// Adds to a line and caps it, in one atomic step. Returns {quantity, capped},
/// or {-1, 0} for a repeated submission, {-2, 0} for a retired cart.
/// ARGV[4..]: product id, quantity to add, cap, TTL in seconds.
const ADD_BODY_LUA: &str = r#"
local quantity = redis.call('HINCRBY', KEYS[1], ARGV[4], ARGV[5])
local cap = tonumber(ARGV[6])
local capped = 0
if quantity > cap then
  redis.call('HSET', KEYS[1], ARGV[4], cap)
  quantity = cap
  capped = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
remember()
return {quantity, capped}
"#;

/// Sets (or with 0 removes) an existing line. Returns {1} set, {0} removed,
/// {-3} not in cart, or the guard's answers. ARGV[4..]: product id, quantity, TTL.
const UPDATE_BODY_LUA: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[4]) == 0 then
  return {-3, 0}
end
if tonumber(ARGV[5]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[4])
else
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
remember()
if tonumber(ARGV[5]) == 0 then return {0, 0} end
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
/// KEYS: cart, merged, submissions; ARGV: anonymous cart id, cap, cart TTL,
/// submission memory, number of lines n, then n product ids, n quantities, then
/// submission ids. Returns the number of lines merged, or -1 if already merged.
/// The time is Redis's (`TIME`), as in REMEMBER_LUA.
const APPLY_LUA: &str = r#"
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return -1
end
local cap = tonumber(ARGV[2])
local now = tonumber(redis.call('TIME')[1])
local n = tonumber(ARGV[5])
for i = 1, n do
  local product = ARGV[5 + i]
  local quantity = redis.call('HINCRBY', KEYS[1], product, ARGV[5 + n + i])
  if quantity > cap then
    redis.call('HSET', KEYS[1], product, cap)
  end
end
if n > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
for i = 6 + 2 * n, #ARGV do
  redis.call('ZADD', KEYS[3], now, ARGV[i])
end
if #ARGV >= 6 + 2 * n then
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return n
"#;

// Scripts are sent once per Redis server (`SCRIPT LOAD` on a NOSCRIPT reply), then
// called by their SHA1 with `EVALSHA`.
pub(super) static ADD_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(format!("{GUARD_LUA}{REMEMBER_LUA}{ADD_BODY_LUA}")));
pub(super) static UPDATE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(format!("{GUARD_LUA}{REMEMBER_LUA}{UPDATE_BODY_LUA}")));
pub(super) static TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(TAKE_LUA));
pub(super) static APPLY_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(APPLY_LUA));

/// A new visitor's cart comes off trial (`session::trial`): the cart and its
/// submission ids get their full lifetimes. One slot, one command.
/// KEYS[1] cart, KEYS[2] submissions; ARGV[1] the cart's TTL, ARGV[2] the ids'.
const END_TRIAL_LUA: &str = r#"
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"#;
pub(super) static END_TRIAL_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(END_TRIAL_LUA));

/// The cart's lines and an integer key of the same hash slot, in one step: the
/// page layout reads the user's cart and credential epoch with one command.
/// KEYS[1] cart, KEYS[2] counter. Returns {HGETALL of the cart, counter or 0}.
const LINES_AND_COUNTER_LUA: &str = r#"
local lines = redis.call('HGETALL', KEYS[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
return {lines, counter}
"#;
pub(super) static LINES_AND_COUNTER_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(LINES_AND_COUNTER_LUA));

// ---- Checkout (orders): empty the cart once its order is placed. ----

/// Empties the cart an order was placed from, once per order: the order's
/// submission id is remembered with the cart's others, in the same step, so a late
/// replay of the same checkout form never touches lines added after the order
/// (the same products added again). The cart is emptied only if it still holds
/// exactly the ordered lines: lines added meanwhile (another tab, another device)
/// are kept. KEYS[1] cart, KEYS[2] submissions; ARGV[1] the order's submission id,
/// ARGV[2..3] as REMEMBER_LUA's; ARGV[4..] product id, quantity, product id, …
/// Returns 1 emptied, 0 kept (it had changed), 2 done before for this order.
const CLEAR_FOR_ORDER_BODY_LUA: &str = r#"
if redis.call('ZSCORE', KEYS[2], submission) then
  return 2
end
local same = redis.call('HLEN', KEYS[1]) == (#ARGV - 3) / 2
if same then
  for i = 4, #ARGV, 2 do
    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
      same = false
      break
    end
  end
end
if same then
  redis.call('DEL', KEYS[1])
end
remember()
if same then return 1 end
return 0
"#;

pub(super) static CLEAR_FOR_ORDER_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(format!(
        "local submission = ARGV[1]\n{REMEMBER_LUA}{CLEAR_FOR_ORDER_BODY_LUA}"
    ))
});
