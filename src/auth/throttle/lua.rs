//! The throttle's Lua scripts, one hash slot each (see the module above).

use std::sync::LazyLock;

use fred::types::scripts::Script;

/// Counts one registration on each key in order, stopping at the first that is
/// over its limit. Returns 0 when it may go on, else the refusing key's PTTL in ms.
/// KEYS: counters of one hash slot; ARGV[1]: window in seconds; ARGV[2..]: limits.
const COUNT_LUA: &str = r#"
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

/// Begins a login attempt in one slot. KEYS: failures 1, in flight 1, failures 2,
/// in flight 2, …, then the form's state. ARGV: the attempt's nonce, the lease in
/// ms, '1' if there is a form id, then one limit per counter.
/// Returns {0, 0} go; {1, ms} wait for attempts in flight; {2, 0} the form is
/// spent; {3, ms} refused: failures at the limit for ms more.
const BEGIN_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nonce, lease = ARGV[1], tonumber(ARGV[2])
local counters = (#KEYS - 1) / 2
local form = KEYS[#KEYS]
if ARGV[3] == '1' then
  local state = redis.call('GET', form)
  if state == 'spent' then return {2, 0} end
  if state and state ~= nonce then
    return {1, math.max(redis.call('PTTL', form), 1)}
  end
end
local busy = 0
for i = 1, counters do
  local failures, inflight = KEYS[2 * i - 1], KEYS[2 * i]
  local failed = tonumber(redis.call('GET', failures) or '0')
  local limit = tonumber(ARGV[3 + i])
  if failed >= limit then
    return {3, math.max(redis.call('PTTL', failures), 1)}
  end
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  local others = redis.call('ZCARD', inflight)
  if redis.call('ZSCORE', inflight, nonce) then others = others - 1 end
  if failed + others >= limit then
    local first = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
    busy = math.max(busy, tonumber(first[2]) - now, 1)
  end
end
if busy > 0 then return {1, busy} end
for i = 1, counters do
  redis.call('ZADD', KEYS[2 * i], now + lease, nonce)
  redis.call('PEXPIRE', KEYS[2 * i], lease)
end
if ARGV[3] == '1' then redis.call('SET', form, nonce, 'PX', lease) end
return {0, 0}
"#;

/// Finishes a login attempt in one slot (KEYS as for begin). ARGV: the nonce,
/// 'failed' | 'succeeded' | 'abandoned', the window in seconds, '1' to clear the
/// first counter on success.
const FINISH_LUA: &str = r#"
local counters = (#KEYS - 1) / 2
local form = KEYS[#KEYS]
for i = 1, counters do
  redis.call('ZREM', KEYS[2 * i], ARGV[1])
  if ARGV[2] == 'failed' then
    if redis.call('INCR', KEYS[2 * i - 1]) == 1 then
      redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[3])
    end
  elseif ARGV[2] == 'succeeded' and i == 1 and ARGV[4] == '1' then
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[2] == 'failed' then
  redis.call('SET', form, 'spent', 'EX', ARGV[3])
elseif redis.call('GET', form) == ARGV[1] then
  redis.call('DEL', form)
end
return 0
"#;

pub(super) static COUNT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(COUNT_LUA));
pub(super) static BEGIN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(BEGIN_LUA));
pub(super) static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(FINISH_LUA));
