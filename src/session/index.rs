//! The per-user session index and credential epoch, in Redis (or process memory in
//! dev mode). The only module that spells these keys:
//!
//! - `sessions:{u<id>}`: sorted set of the user's session ids, scored by login time
//!   (ms). Written at login (the new session's first save), logout, revoke; read by
//!   the sessions page, which prunes ids whose session has ended. Capped: a login
//!   over the cap ends the oldest sessions. It lives as long as the longest login
//!   can, refreshed at each login. Page views never touch it.
//! - `sessions:{u<id>}:epoch`: the user's credential epoch. A session carries the
//!   epoch it was created under; one older than the current epoch is ended where
//!   the user is read (`ShopSession::user`). Raised by a password change, "sign out
//!   other sessions" and account deletion, so no stale session survives those even
//!   if the index missed it. Page views read it with the cart, in one script.
//!
//! Both keys carry the user's hash tag `{u<id>}`, the same as the user's cart, so
//! every script here (and the page's cart-and-epoch read) touches one hash slot.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::{KeysInterface, SortedSetsInterface};
use fred::types::scripts::Script;

use crate::redis::memory::MemoryCounters;
use crate::redis::{bounded, Redis, StoreError};
use crate::telemetry::metrics::{redis_call as measured, RedisKind};

/// Most sessions a user may have at once; a new login ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 100;

/// KEYS[1] index; ARGV: session id, score (ms), TTL seconds, cap.
/// Returns the ids that fell over the cap (never the one just added).
const INDEX_ADD_LUA: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
local ended = {}
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, over)) do
    if id ~= ARGV[1] and #ended < over then
      ended[#ended + 1] = id
    end
  end
  if #ended > 0 then
    redis.call('ZREM', KEYS[1], unpack(ended))
  end
end
return ended
"#;

/// Raises the epoch to max(current + 1, Redis's clock in ms), so that it grows even
/// after the key expired. KEYS[1] epoch; ARGV[1] TTL seconds. Returns the new epoch.
const EPOCH_BUMP_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local epoch = math.max(current + 1, now)
redis.call('SET', KEYS[1], string.format('%d', epoch), 'EX', ARGV[1])
return epoch
"#;

static INDEX_ADD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(INDEX_ADD_LUA));
static EPOCH_BUMP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(EPOCH_BUMP_LUA));

/// The user's session index key (the sorted set of their session ids).
pub fn index_key(user_id: i64) -> String {
    crate::redis::user_key("sessions:", user_id, "")
}

/// The user's credential epoch key: read with the cart on page views (same slot).
pub fn epoch_key(user_id: i64) -> String {
    crate::redis::user_key("sessions:", user_id, ":epoch")
}

#[derive(Debug, Clone)]
pub struct SessionIndex {
    backend: Backend,
    /// How long the index and the epoch outlive their last write: the longest a
    /// login can live, plus a day.
    keep: Duration,
}

/// In memory: each user's session ids with their login time (ms), oldest first.
type MemoryIndex = HashMap<i64, Vec<(String, i64)>>;

#[derive(Debug, Clone)]
enum Backend {
    Redis(Redis),
    Memory {
        index: Arc<Mutex<MemoryIndex>>,
        /// The epochs, under their Redis keys, shared with the cart store.
        epochs: MemoryCounters,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl SessionIndex {
    pub fn redis(redis: Redis, longest_login: Duration) -> Self {
        SessionIndex {
            backend: Backend::Redis(redis),
            keep: longest_login + Duration::from_secs(86_400),
        }
    }

    /// In process memory, the epochs kept in `epochs` (shared with the cart store).
    pub fn memory(longest_login: Duration, epochs: MemoryCounters) -> Self {
        SessionIndex {
            backend: Backend::Memory {
                index: Arc::default(),
                epochs,
            },
            keep: longest_login + Duration::from_secs(86_400),
        }
    }

    /// The user's current credential epoch (0 when never raised).
    pub async fn epoch(&self, user_id: i64) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Redis(redis) => {
                let read = async {
                    let client = redis.connected(&epoch_key(user_id))?;
                    Ok::<_, StoreError>(bounded(client.get(epoch_key(user_id))).await?)
                };
                let epoch: Option<i64> = measured(RedisKind::Index, read).await?;
                Ok(epoch.unwrap_or(0))
            }
            Backend::Memory { epochs, .. } => Ok(epochs.get(&epoch_key(user_id))),
        }
    }

    /// Raises the user's epoch: every session created before now is stale.
    pub async fn bump_epoch(&self, user_id: i64) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Redis(redis) => Ok(bounded(EPOCH_BUMP_SCRIPT.evalsha_with_reload(
                &redis.connected(&epoch_key(user_id))?,
                epoch_key(user_id),
                vec![self.keep.as_secs().to_string()],
            ))
            .await?),
            Backend::Memory { epochs, .. } => {
                Ok(epochs.update(&epoch_key(user_id), |epoch| (epoch + 1).max(now_ms())))
            }
        }
    }

    /// Adds a new session to the user's index; returns the ids of the oldest
    /// sessions that fell over [`MAX_SESSIONS_PER_USER`], for the caller to end.
    pub async fn index_add(
        &self,
        user_id: i64,
        session_id: &str,
        _login_at: i64,
    ) -> Result<Vec<String>, StoreError> {
        let score = now_ms();
        match &self.backend {
            Backend::Redis(redis) => Ok(bounded(INDEX_ADD_SCRIPT.evalsha_with_reload(
                &redis.connected(&index_key(user_id))?,
                index_key(user_id),
                vec![
                    session_id.to_owned(),
                    score.to_string(),
                    self.keep.as_secs().to_string(),
                    MAX_SESSIONS_PER_USER.to_string(),
                ],
            ))
            .await?),
            Backend::Memory { index, .. } => {
                let mut index = index.lock().expect("index lock");
                let list = index.entry(user_id).or_default();
                list.retain(|(id, _)| id != session_id);
                list.push((session_id.to_owned(), score));
                let over = list.len().saturating_sub(MAX_SESSIONS_PER_USER);
                Ok(list.drain(..over).map(|(id, _)| id).collect())
            }
        }
    }

    /// The user's indexed session ids, oldest login first. Some may have ended:
    /// the caller prunes those ([`Self::index_remove`]).
    pub async fn index_members(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Redis(redis) => Ok(bounded(redis.connected(&index_key(user_id))?.zrange(
                index_key(user_id),
                0,
                -1,
                None,
                false,
                None,
                false,
            ))
            .await?),
            Backend::Memory { index, .. } => Ok(index
                .lock()
                .expect("index lock")
                .get(&user_id)
                .map(|list| list.iter().map(|(id, _)| id.clone()).collect())
                .unwrap_or_default()),
        }
    }

    pub async fn index_remove(
        &self,
        user_id: i64,
        session_ids: &[String],
    ) -> Result<(), StoreError> {
        if session_ids.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Redis(redis) => {
                let _: i64 = bounded(
                    redis
                        .connected(&index_key(user_id))?
                        .zrem(index_key(user_id), session_ids.to_vec()),
                )
                .await?;
            }
            Backend::Memory { index, .. } => {
                if let Some(list) = index.lock().expect("index lock").get_mut(&user_id) {
                    list.retain(|(id, _)| !session_ids.contains(id));
                }
            }
        }
        Ok(())
    }

    /// Forgets the user's index (the account is gone; the epoch stays, raised).
    pub async fn forget(&self, user_id: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redis(redis) => {
                let _: i64 = bounded(
                    redis
                        .connected(&index_key(user_id))?
                        .del(index_key(user_id)),
                )
                .await?;
            }
            Backend::Memory { index, .. } => {
                index.lock().expect("index lock").remove(&user_id);
            }
        }
        Ok(())
    }
}
