//! The session store: where records live (Redis, or process memory in dev mode),
//! with a deadline from [`Lifetimes`], tombstones for ended sessions, and a save
//! that never brings back a session someone else ended.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use fred::prelude::{Client, Expiration, KeysInterface, SetOptions};
use fred::types::scripts::Script;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionStore as _,
};

use super::index::SessionIndex;
use super::lifetimes::{LifetimeFacts, Lifetimes};
use super::prefetch::take_prefetched;
use super::record::{key, Login};
use crate::error::AppError;
use crate::redis::{bounded, Durability, Redis, StoreError};
use crate::telemetry::metrics::{redis_call as measured, RedisKind};

mod tombstone;
pub(crate) use tombstone::ENDED_ELSEWHERE;
use tombstone::{tombstone_record, ENDED_HERE, TOMBSTONE_PREFIX};

/// The session store: records in Redis (or, in dev mode, tower-sessions' in-memory store), with
/// two things added in one place: the deadline from [`Lifetimes`], and a `save`
/// that never brings back a session someone else deleted.
#[derive(Debug, Clone)]
pub struct SessionStore {
    backend: Backend,
    lifetimes: Lifetimes,
    /// The per-user session index, told about every new logged-in session.
    index: SessionIndex,
    /// Sessions whose save found them ended (`cookie::keep_cookies_forward`).
    ended_meanwhile: Arc<EndedMeanwhile>,
    /// What each write must reach before it is acknowledged.
    durability: Durability,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis(Redis),
    /// The dev twin, and a lock that makes its check-then-write steps (a save only
    /// over a live record, a tombstone only over a live one) one step each, as the
    /// Redis scripts are: a save racing a logout must not bring the session back.
    Memory(MemoryStore, Arc<tokio::sync::Mutex<()>>),
}

impl SessionStore {
    pub fn redis(redis: Redis, lifetimes: Lifetimes, index: SessionIndex) -> Self {
        SessionStore {
            backend: Backend::Redis(redis),
            lifetimes,
            index,
            ended_meanwhile: Arc::default(),
            durability: Durability::primary(),
        }
    }

    /// Acknowledges a write only once `durability` holds (`WAIT`, see [`Durability`]).
    pub fn confirmed_by(self, durability: Durability) -> Self {
        SessionStore { durability, ..self }
    }

    pub fn memory(lifetimes: Lifetimes, index: SessionIndex) -> Self {
        SessionStore {
            backend: Backend::Memory(MemoryStore::default(), Arc::default()),
            lifetimes,
            index,
            durability: Durability::primary(),
            ended_meanwhile: Arc::default(),
        }
    }

    /// When this record's key is to expire, from what the record says of itself.
    fn deadline(&self, record: &Record) -> OffsetDateTime {
        let facts = LifetimeFacts::from_record(&record.data);
        self.lifetimes.deadline(facts, OffsetDateTime::now_utc())
    }
}

impl SessionStore {
    /// True (once) when a save of session `id` in this process found it ended: a
    /// logout or a login's new id in another tab, between this request's read and
    /// its save. Its response must not send that session's cookie again.
    pub fn ended_meanwhile(&self, id: &str) -> bool {
        self.ended_meanwhile.take(id)
    }
}

/// The sessions whose save was refused because they had ended, until their
/// response has gone (a few at any time; bounded all the same).
#[derive(Debug, Default)]
struct EndedMeanwhile(std::sync::Mutex<std::collections::HashSet<String>>);

impl EndedMeanwhile {
    const CAPACITY: usize = 10_000;

    fn note(&self, id: &Id) {
        let mut ids = self.0.lock().expect("ended lock");
        if ids.len() >= Self::CAPACITY {
            ids.clear();
        }
        ids.insert(id.to_string());
    }

    fn take(&self, id: &str) -> bool {
        let mut ids = self.0.lock().expect("ended lock");
        !ids.is_empty() && ids.remove(id)
    }
}

/// A record as it is written: tower-sessions' [`Record`] with the deadline
/// worked out here, borrowing the data instead of copying the whole map for
/// every save. The same fields in the same order, so the same msgpack bytes.
#[derive(Serialize)]
struct SavedRecord<'a> {
    id: &'a Id,
    data: &'a HashMap<String, Value>,
    expiry_date: OffsetDateTime,
}

#[async_trait]
impl tower_sessions::SessionStore for SessionStore {
    /// Creates a session (a new visitor's, or a login's new id). A logged-in one is
    /// added to its user's index; when that pushes the user over the cap, the oldest
    /// sessions are ended.
    ///
    /// Always under a fresh id: after `flush()` (logout) tower-sessions would create
    /// the next session under the ended one's id, which now holds its tombstone —
    /// and an old cookie must never name a new session anyway.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        record.id = Id::default();
        record.expiry_date = self.deadline(record);
        match &self.backend {
            Backend::Redis(redis) => create_new(redis, &self.durability, record).await?,
            Backend::Memory(store, _) => store.create(record).await?,
        }
        if let Some(user_id) = record.data.get(key::USER_ID).and_then(Value::as_i64) {
            let login_at = LifetimeFacts::from_record(&record.data).login_at;
            let evicted = self
                .index
                .index_add(user_id, &record.id.to_string(), login_at)
                .await
                .map_err(|e| session_store::Error::Backend(format!("{e:#}")))?;
            for id in evicted.iter().filter_map(|sid| sid.parse::<Id>().ok()) {
                self.delete(&id).await?;
            }
        }
        Ok(())
    }

    /// Saves an existing session, only if it still exists and has not ended.
    ///
    /// The published store does `SET … XX` and then fails to read Redis's "not set"
    /// answer as a boolean when the key is gone (tower-sessions-stores issue 19).
    /// Here a vanished or ended session stays so: a request that loaded it before a
    /// logout (or a login's new id) in another tab cannot bring it back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let expiry_date = self.deadline(record);
        match &self.backend {
            Backend::Redis(redis) => {
                let saved = SavedRecord {
                    id: &record.id,
                    data: &record.data,
                    expiry_date,
                };
                // A save keeps a live session current (a flash shown, a deadline slid):
                // not a write the shopper was promised, so not one to wait for a
                // replica over. Creating and ending sessions are confirmed.
                let routine = Durability::primary();
                if !save_if_live(redis, &routine, &saved).await? {
                    self.ended_meanwhile.note(&record.id);
                }
                Ok(())
            }
            Backend::Memory(store, lock) => {
                // The dev twin has no script: check, then write, under its lock.
                let _one_at_a_time = lock.lock().await;
                match store.load(&record.id).await? {
                    Some(current) if !current.data.contains_key(key::ENDED) => {
                        let mut record = record.clone();
                        record.expiry_date = expiry_date;
                        store.save(&record).await?;
                    }
                    _ => self.ended_meanwhile.note(&record.id),
                }
                Ok(())
            }
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        // Read already, together with the cart (`web::page`)?
        if let Some(record) = take_prefetched(id) {
            return Ok(record);
        }
        match &self.backend {
            Backend::Redis(redis) => {
                let read = async {
                    let key = id.to_string();
                    bounded(connected(redis, &key)?.get(key))
                        .await
                        .map_err(backend_error)
                };
                let bytes: Option<Vec<u8>> = measured(RedisKind::Session, read).await?;
                let Some(bytes) = bytes else {
                    return Ok(None);
                };
                if let Some(why) = bytes.strip_prefix(TOMBSTONE_PREFIX) {
                    return Ok(Some(tombstone_record(*id, &String::from_utf8_lossy(why))));
                }
                rmp_serde::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| session_store::Error::Decode(e.to_string()))
            }
            Backend::Memory(store, _) => store.load(id).await,
        }
    }

    /// Ends a session (logout, or the old id of a login): the key becomes a short-lived
    /// tombstone instead of vanishing, so a request still carrying the old cookie —
    /// an add to cart racing the login in another tab — is told its session ended
    /// and changes nothing, instead of silently starting a new, orphaned cart.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.end(id, ENDED_HERE).await
    }
}

/// While the connection to Redis is down, session commands fail at once instead of
/// queueing until the command timeout: pages that only read are drawn without the
/// visitor (degraded mode), and nobody waits for an answer that cannot come.
///
/// `key` is the session's key (its id as text), made once by the caller for both
/// this and the command.
fn connected(redis: &Redis, key: &str) -> session_store::Result<Client> {
    redis.connected(key).map_err(store_error)
}

fn backend_error(err: fred::error::Error) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn store_error(err: StoreError) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

/// How long from now until `deadline`, in whole seconds (at least 1). Keys are
/// given lifetimes, never moments: a moment from this replica's clock means
/// something else on Redis's when the two clocks differ (a replica 40 minutes
/// slow would write deadlines already past), a lifetime means the same on both.
fn seconds_until(deadline: OffsetDateTime) -> i64 {
    (deadline - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(1)
}

/// Writes a new session under a fresh id (`SET … NX EX`): an id that is taken
/// (128 random bits: never, in practice) is drawn again.
async fn create_new(
    redis: &Redis,
    durability: &Durability,
    record: &mut Record,
) -> session_store::Result<()> {
    loop {
        let key = record.id.to_string();
        let client = connected(redis, &key)?;
        let bytes =
            rmp_serde::to_vec(&*record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let lifetime = Expiration::EX(seconds_until(record.expiry_date));
        let created = durability
            .write(&client, &key, |client| {
                client.set::<bool, _, _>(
                    &key,
                    bytes.as_slice(),
                    Some(lifetime),
                    Some(SetOptions::NX),
                    false,
                )
            })
            .await
            .map_err(store_error)?;
        if created {
            return Ok(());
        }
        record.id = Id::default();
    }
}

/// Overwrites the record only if its key holds a live session (not gone, not a tombstone).
const SAVE_LUA: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, 6) == 'ended:' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"#;
static SAVE_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::from_lua(SAVE_LUA));

/// True when the record was written; false when its session had ended meanwhile.
async fn save_if_live(
    redis: &Redis,
    durability: &Durability,
    record: &SavedRecord<'_>,
) -> session_store::Result<bool> {
    let key = record.id.to_string();
    let client = connected(redis, &key)?;
    let bytes =
        rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let saved: i64 = durability
        .script(
            &SAVE_SCRIPT,
            &client,
            vec![key],
            vec![
                fred::types::Value::Bytes(bytes.into()),
                fred::types::Value::from(seconds_until(record.expiry_date)),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(saved == 1)
}

// ---- The sessions of one user: listed, ended. ----

/// One live session of a user, as the sessions page lists it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub id: Id,
    pub facts: Login,
}

impl SessionStore {
    /// Every live session of the user, oldest login first. Reads the index and each
    /// session it names; ids whose session ended (expired, logged out elsewhere, or
    /// from before the last credential change) are pruned from the index.
    pub async fn live_sessions(&self, user_id: i64) -> Result<Vec<LiveSession>, AppError> {
        let members = self.index.index_members(user_id).await?;
        let epoch = self.index.epoch(user_id).await?;
        // Read at once: each GET is its own key (own slot), pipelined on the connection.
        let mut reads = JoinSet::new();
        for (order, member) in members.iter().enumerate() {
            let store = self.clone();
            let member = member.clone();
            reads.spawn(async move {
                let record = match member.parse::<Id>() {
                    Ok(id) => store.load(&id).await.map(|r| r.map(|r| (id, r))),
                    Err(_) => Ok(None),
                };
                (order, member, record)
            });
        }
        let mut live = Vec::new();
        let mut ended = Vec::new();
        let mut stale = Vec::new();
        while let Some(joined) = reads.join_next().await {
            let (order, member, record) =
                joined.map_err(|e| AppError::Internal(anyhow::anyhow!("session read: {e}")))?;
            let record = record?;
            match record {
                Some((id, record)) => {
                    match Login::from_record(&record) {
                        Some(facts) if facts.user_id == user_id && facts.epoch >= epoch => {
                            live.push((order, LiveSession { id, facts }));
                        }
                        // From before the user's last credential change.
                        Some(facts) if facts.user_id == user_id => {
                            stale.push(id);
                            ended.push(member);
                        }
                        // Ended, or no longer this user's.
                        _ => ended.push(member),
                    }
                }
                None => ended.push(member),
            }
        }
        for id in stale {
            self.delete(&id).await?;
        }
        self.index.index_remove(user_id, &ended).await?;
        live.sort_by_key(|(order, _)| *order);
        Ok(live.into_iter().map(|(_, s)| s).collect())
    }

    /// Ends the given sessions of a user from another of their sessions (revoked,
    /// a password change): their keys become tombstones that say so, and they
    /// leave the index.
    pub async fn end_sessions(&self, user_id: i64, ids: &[Id]) -> Result<(), AppError> {
        self.end_sessions_because(user_id, ids, ENDED_ELSEWHERE)
            .await
    }

    async fn end_sessions_because(
        &self,
        user_id: i64,
        ids: &[Id],
        why: &str,
    ) -> Result<(), AppError> {
        for id in ids {
            self.end(id, why).await?;
        }
        let members: Vec<String> = ids.iter().map(Id::to_string).collect();
        self.index
            .index_remove(user_id, &members)
            .await
            .map_err(AppError::from)
    }

    /// A replayed login form: ends the session(s) its first try created. Returns
    /// whether there was one.
    pub async fn end_sessions_from_submission(
        &self,
        user_id: i64,
        submission: &str,
    ) -> Result<bool, AppError> {
        let earlier: Vec<Id> = self
            .live_sessions(user_id)
            .await?
            .into_iter()
            .filter(|s| s.facts.submission.as_deref() == Some(submission))
            .map(|s| s.id)
            .collect();
        // Replaced by this same browser's login: nothing to tell it later.
        self.end_sessions_because(user_id, &earlier, ENDED_HERE)
            .await?;
        Ok(!earlier.is_empty())
    }

    /// Ends every session of the user but `keep`, after a password change, an
    /// account deletion or "sign out other sessions": raises the user's credential
    /// epoch, so every older session is stale wherever it is next read, indexed or
    /// not, and deletes the ones the index names at once. Returns the new epoch,
    /// for `keep` to carry over, and how many sessions ended.
    ///
    /// The sessions are listed before the epoch is raised: afterwards every one of
    /// them is stale, `keep` too, and listing would prune it. Listing is best
    /// effort; the epoch is what ends them.
    pub async fn end_sessions_of(
        &self,
        user_id: i64,
        keep: Option<Id>,
    ) -> Result<(i64, usize), AppError> {
        let listed = self.live_sessions(user_id).await;
        let epoch = self.index.bump_epoch(user_id).await?;
        let others: Vec<Id> = listed
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.id)
            .filter(|id| Some(*id) != keep)
            .collect();
        self.end_sessions(user_id, &others).await?;
        Ok((epoch, others.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_record_is_written_exactly_as_tower_sessions_record() {
        // The store reads what `save` writes back as a `Record` (and the published
        // store writes `Record`s too): the borrowed form must not differ by a byte.
        let record = Record {
            id: Id::default(),
            data: HashMap::from([
                (key::USER_ID.to_owned(), Value::from(7)),
                (key::USER_NAME.to_owned(), Value::from("ada")),
                (
                    key::FLASH.to_owned(),
                    serde_json::json!([{"kind": "success", "text": "Added", "link": ["/cart", "View cart"]}]),
                ),
            ]),
            expiry_date: OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
        };
        let saved = SavedRecord {
            id: &record.id,
            data: &record.data,
            expiry_date: record.expiry_date,
        };
        let bytes = rmp_serde::to_vec(&saved).unwrap();
        assert_eq!(bytes, rmp_serde::to_vec(&record).unwrap());
        assert_eq!(rmp_serde::from_slice::<Record>(&bytes).unwrap(), record);
    }
}
