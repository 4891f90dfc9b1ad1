//! Tombstones: what an ended session's key holds instead of its record, and why
//! it ended (this browser's logout, or another device's doing).

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{Expiration, KeysInterface, SetOptions};
use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store, SessionStore as _,
};

use super::{connected, store_error, Backend, SessionStore};
use crate::session::record::key;

/// A tombstone's reason: ended by this browser (logout, a login's new id).
pub(super) const ENDED_HERE: &str = "ended";
/// A tombstone's reason: ended from another session of the user (revoked, or a
/// password change), so the browser that still holds it can be told why.
pub(crate) const ENDED_ELSEWHERE: &str = "elsewhere";

impl SessionStore {
    /// Turns a live session's key into a tombstone saying `why`. One ended here
    /// lasts a minute (only a request racing the logout can still carry its cookie);
    /// one ended elsewhere keeps the session's own lifetime, for as long as the
    /// browser that holds it may come back and ask what happened.
    pub(super) async fn end(&self, id: &Id, why: &str) -> session_store::Result<()> {
        let keep_lifetime = why != ENDED_HERE;
        match &self.backend {
            Backend::Redis(redis) => {
                let mut value = TOMBSTONE_PREFIX.to_vec();
                value.extend_from_slice(why.as_bytes());
                let expiry = if keep_lifetime {
                    Expiration::KEEPTTL
                } else {
                    Expiration::EX(TOMBSTONE_TTL.as_secs() as i64)
                };
                let key = id.to_string();
                let client = connected(redis, &key)?;
                self.durability
                    .write(&client, &key, |client| {
                        client.set::<fred::types::Value, _, _>(
                            &key,
                            value.as_slice(),
                            Some(expiry),
                            Some(SetOptions::XX),
                            false,
                        )
                    })
                    .await
                    .map_err(store_error)?;
                Ok(())
            }
            Backend::Memory(store, lock) => {
                let _one_at_a_time = lock.lock().await;
                if let Some(live) = store.load(id).await? {
                    let mut record = tombstone_record(*id, why);
                    record.expiry_date = if keep_lifetime {
                        live.expiry_date
                    } else {
                        OffsetDateTime::now_utc() + TOMBSTONE_TTL
                    };
                    store.save(&record).await?;
                }
                Ok(())
            }
        }
    }
}

/// What an ended session's key holds for [`TOMBSTONE_TTL`]: not msgpack, so it can
/// never be mistaken for a live record.
pub(super) const TOMBSTONE_PREFIX: &[u8] = b"ended:";

/// Long enough for any request that raced the logout or login to arrive.
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

pub(super) fn tombstone_record(id: Id, why: &str) -> Record {
    let mut data = HashMap::new();
    data.insert(key::ENDED.to_owned(), Value::String(why.to_owned()));
    Record {
        id,
        data,
        expiry_date: OffsetDateTime::now_utc() + TOMBSTONE_TTL,
    }
}
