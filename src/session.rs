//! Server-side sessions: what the `sid` cookie points at, how long it lives, and
//! the typed accessors the handlers use.
//!
//! The flow, for a reader coming from Flask-Session:
//! 1. `tower_sessions::SessionManagerLayer` (built in `web::routes`) reads the `sid`
//!    cookie and hands each handler a lazy [`Session`]: nothing is fetched until a
//!    handler asks for a value, so an anonymous page view with no cookie costs no
//!    Redis command at all.
//! 2. The first read loads the whole record with one `GET <session id>`
//!    ([`SessionStoreWrapper::load`]).
//! 3. After the handler, the layer saves the record only if it was modified
//!    (`SET <id> <msgpack> EXAT <deadline>`), and sets or removes the cookie.
//!
//! The deadline written to Redis comes from [`Lifetimes::deadline`], in one place
//! for every kind of session, and [`keep_alive`] slides it for users who only read.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use axum::{extract::FromRequestParts, http::request::Parts};
use fred::prelude::{Client, Expiration, KeysInterface, Pool, SetOptions};
use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store, Expiry, MemoryStore, Session, SessionStore,
};
use tower_sessions_redis_store::RedisStore;

use crate::cart::CartOwner;
use crate::error::AppError;

/// The cookie's name: short, and says nothing about the framework behind it.
pub const COOKIE_NAME: &str = "sid";

/// Keys inside the session record. Short on purpose: every logged-in session in
/// Redis carries them, and a million sessions multiply each byte.
mod key {
    pub const USER_ID: &str = "uid";
    pub const USER_NAME: &str = "name";
    pub const REMEMBER: &str = "rm";
    pub const LOGIN_AT: &str = "at";
    pub const SEEN_AT: &str = "seen";
    pub const CART_ID: &str = "cart";
    pub const FLASH: &str = "flash";
    pub const CREATED_BY: &str = "by";
    /// Only in a tombstone: this session was ended (logout, or replaced at login).
    pub const ENDED: &str = "ended";
}

/// How long each kind of session lives. Read by the store (the Redis key's
/// deadline) and by the cookie middleware (the cookie's Max-Age), so the two agree.
#[derive(Debug, Clone)]
pub struct Lifetimes {
    /// Logged in, "remember me" off: idle timeout, browser-session cookie.
    pub idle: Duration,
    /// Logged in, "remember me" on: idle timeout, persistent cookie.
    pub remember: Duration,
    /// Absolute lifetimes of a login, however active the user is.
    pub max: Duration,
    pub remember_max: Duration,
    /// Anonymous visitor with a cart: as long as the anonymous cart.
    pub anonymous: Duration,
}

/// The few facts about a session that decide its lifetime.
#[derive(Debug, Clone, Copy, Default)]
pub struct LifetimeFacts {
    logged_in: bool,
    remember: bool,
    login_at: i64,
}

impl LifetimeFacts {
    fn from_record(data: &HashMap<String, Value>) -> Self {
        LifetimeFacts {
            logged_in: data.contains_key(key::USER_ID),
            remember: data
                .get(key::REMEMBER)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            login_at: data.get(key::LOGIN_AT).and_then(Value::as_i64).unwrap_or(0),
        }
    }

    async fn from_session(session: &Session) -> Result<Self, tower_sessions::session::Error> {
        Ok(LifetimeFacts {
            logged_in: session.get::<i64>(key::USER_ID).await?.is_some(),
            remember: session.get::<bool>(key::REMEMBER).await?.unwrap_or(false),
            login_at: session.get::<i64>(key::LOGIN_AT).await?.unwrap_or(0),
        })
    }
}

impl Lifetimes {
    /// When the server forgets this session if nothing touches it again.
    pub fn deadline(&self, facts: LifetimeFacts, now: OffsetDateTime) -> OffsetDateTime {
        if !facts.logged_in {
            return now + self.anonymous;
        }
        let (idle, max) = if facts.remember {
            (self.remember, self.remember_max)
        } else {
            (self.idle, self.max)
        };
        let login_at = OffsetDateTime::from_unix_timestamp(facts.login_at).unwrap_or(now);
        (now + idle).min(login_at + max)
    }

    /// What the browser is told: "remember me" off gives a cookie that dies with the browser.
    pub fn cookie_expiry(&self, facts: LifetimeFacts) -> Expiry {
        match (facts.logged_in, facts.remember) {
            (true, false) => Expiry::OnSessionEnd,
            (true, true) => Expiry::OnInactivity(to_time(self.remember)),
            (false, _) => Expiry::OnInactivity(to_time(self.anonymous)),
        }
    }

    /// Reading pages does not modify the session, and an unmodified session is not
    /// saved, so its deadline would not move. Instead of writing on every request
    /// (`always_save`), a reader's session is re-saved once this much time has passed.
    pub fn keep_alive_interval(&self) -> Duration {
        (self.idle / 6).min(Duration::from_secs(300))
    }
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The session store: the published Redis store (or the dev in-memory one), with
/// two things added in one place: the deadline from [`Lifetimes`], and a `save`
/// that never brings back a session someone else deleted.
#[derive(Debug, Clone)]
pub struct SessionStoreWrapper {
    backend: Backend,
    lifetimes: Lifetimes,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis { store: RedisStore<Pool>, pool: Pool },
    Memory(MemoryStore),
}

impl SessionStoreWrapper {
    pub fn redis(pool: Pool, lifetimes: Lifetimes) -> Self {
        let store = RedisStore::new(pool.clone());
        SessionStoreWrapper {
            backend: Backend::Redis { store, pool },
            lifetimes,
        }
    }

    pub fn memory(lifetimes: Lifetimes) -> Self {
        SessionStoreWrapper {
            backend: Backend::Memory(MemoryStore::default()),
            lifetimes,
        }
    }

    fn with_deadline(&self, record: &Record) -> Record {
        let mut record = record.clone();
        let facts = LifetimeFacts::from_record(&record.data);
        record.expiry_date = self.lifetimes.deadline(facts, OffsetDateTime::now_utc());
        record
    }
}

#[async_trait]
impl SessionStore for SessionStoreWrapper {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        record.expiry_date = self.with_deadline(record).expiry_date;
        match &self.backend {
            Backend::Redis { store, pool } => {
                connected(pool)?;
                store.create(record).await
            }
            Backend::Memory(store) => store.create(record).await,
        }
    }

    /// Saves an existing session, only if it still exists and has not ended.
    ///
    /// The published store does `SET … XX` and then fails to read Redis's "not set"
    /// answer as a boolean when the key is gone (tower-sessions-stores issue 19).
    /// Here a vanished or ended session stays so: a request that loaded it before a
    /// logout (or a login's new id) in another tab cannot bring it back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let record = self.with_deadline(record);
        match &self.backend {
            Backend::Redis { pool, .. } => save_if_live(connected(pool)?, &record).await,
            Backend::Memory(store) => {
                // The dev twin has no script; check first (one process, one lock away).
                if let Some(current) = store.load(&record.id).await? {
                    if !current.data.contains_key(key::ENDED) {
                        store.save(&record).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.backend {
            Backend::Redis { pool, .. } => {
                let bytes: Option<Vec<u8>> = connected(pool)?
                    .get(id.to_string())
                    .await
                    .map_err(backend_error)?;
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
            Backend::Memory(store) => store.load(id).await,
        }
    }

    /// Ends a session (logout, or the old id of a login): the key becomes a short-lived
    /// tombstone instead of vanishing, so a request still carrying the old cookie —
    /// an add to cart racing the login in another tab — is told its session ended
    /// and changes nothing, instead of silently starting a new, orphaned cart.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.backend {
            Backend::Redis { pool, .. } => {
                let mut value = TOMBSTONE_PREFIX.to_vec();
                value.extend_from_slice(b"ended");
                let _: fred::types::Value = connected(pool)?
                    .set(
                        id.to_string(),
                        value.as_slice(),
                        Some(Expiration::EX(TOMBSTONE_TTL.as_secs() as i64)),
                        Some(SetOptions::XX),
                        false,
                    )
                    .await
                    .map_err(backend_error)?;
                Ok(())
            }
            Backend::Memory(store) => {
                if store.load(id).await?.is_some() {
                    let mut record = tombstone_record(*id, "ended");
                    record.expiry_date = OffsetDateTime::now_utc() + TOMBSTONE_TTL;
                    store.save(&record).await?;
                }
                Ok(())
            }
        }
    }
}

/// What an ended session's key holds for [`TOMBSTONE_TTL`]: not msgpack, so it can
/// never be mistaken for a live record.
const TOMBSTONE_PREFIX: &[u8] = b"ended:";

/// Long enough for any request that raced the logout or login to arrive.
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

fn tombstone_record(id: Id, why: &str) -> Record {
    let mut data = HashMap::new();
    data.insert(key::ENDED.to_owned(), Value::String(why.to_owned()));
    Record {
        id,
        data,
        expiry_date: OffsetDateTime::now_utc() + TOMBSTONE_TTL,
    }
}

/// While the connection to Redis is down, session commands fail at once instead of
/// queueing until the command timeout: pages that only read are drawn without the
/// visitor (degraded mode), and nobody waits for an answer that cannot come.
fn connected(pool: &Pool) -> session_store::Result<&Client> {
    use fred::prelude::ClientLike;
    let client = pool.next();
    if client.is_connected() {
        Ok(client)
    } else {
        Err(session_store::Error::Backend(
            "not connected to Redis".to_owned(),
        ))
    }
}

fn backend_error(err: fred::error::Error) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

/// Overwrites the record only if its key holds a live session (not gone, not a tombstone).
const SAVE_LUA: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, 6) == 'ended:' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
return 1
"#;
static SAVE_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::from_lua(SAVE_LUA));

async fn save_if_live(client: &Client, record: &Record) -> session_store::Result<()> {
    let bytes =
        rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let _saved: i64 = SAVE_SCRIPT
        .evalsha_with_reload(
            client,
            record.id.to_string(),
            vec![
                fred::types::Value::from(bytes.as_slice()),
                fred::types::Value::from(record.expiry_date.unix_timestamp()),
            ],
        )
        .await
        .map_err(backend_error)?;
    Ok(())
}

/// A message shown once on the next page ("Added 2 × Blue Teapot to your cart").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
    /// An optional link after the text ("View cart"): path and label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Info,
    Success,
    Error,
}

impl FlashKind {
    pub fn css_class(self) -> &'static str {
        match self {
            FlashKind::Info => "flash-info",
            FlashKind::Success => "flash-success",
            FlashKind::Error => "flash-error",
        }
    }
}

impl Flash {
    /// The same message, followed by a link.
    pub fn with_link(mut self, path: &str, label: &str) -> Self {
        self.link = Some((path.to_owned(), label.to_owned()));
        self
    }

    pub fn success(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Success,
            text: text.into(),
            link: None,
        }
    }
    pub fn info(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Info,
            text: text.into(),
            link: None,
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
            link: None,
        }
    }
}

/// The logged-in user as the session knows them: no database lookup per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub id: i64,
    pub name: String,
}

/// What a write sent with an ended session's cookie is told.
pub const SESSION_ENDED: &str = "You logged in or out in another tab or window while this was \
being sent, so nothing was changed. Please check your cart and try again.";

/// Typed access to the session: handlers never touch raw keys.
#[derive(Debug, Clone)]
pub struct ShopSession(Session);

impl<S: Send + Sync> FromRequestParts<S> for ShopSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Session::from_request_parts(parts, state)
            .await
            .map(ShopSession)
            .map_err(|(_, msg)| AppError::Internal(anyhow::anyhow!("session layer missing: {msg}")))
    }
}

type SessionResult<T> = Result<T, AppError>;

impl ShopSession {
    pub fn inner(&self) -> &Session {
        &self.0
    }

    pub async fn user(&self) -> SessionResult<Option<SessionUser>> {
        let Some(id) = self.0.get::<i64>(key::USER_ID).await? else {
            return Ok(None);
        };
        let name = self
            .0
            .get::<String>(key::USER_NAME)
            .await?
            .unwrap_or_default();
        Ok(Some(SessionUser { id, name }))
    }

    /// Logs `user` in: a new session id (so an id planted before login is worthless:
    /// session fixation), then the user's facts. Returns the anonymous cart id the
    /// visitor had, for the caller to merge.
    pub async fn log_in(
        &self,
        user: &SessionUser,
        remember: bool,
        replica: &str,
    ) -> SessionResult<Option<String>> {
        let anonymous_cart = self.0.remove::<String>(key::CART_ID).await?;
        if self.0.id().is_some() {
            self.0.cycle_id().await?;
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.0.insert(key::USER_ID, user.id).await?;
        self.0.insert(key::USER_NAME, &user.name).await?;
        self.0.insert(key::REMEMBER, remember).await?;
        self.0.insert(key::LOGIN_AT, now).await?;
        self.0.insert(key::SEEN_AT, now).await?;
        self.0.insert(key::CREATED_BY, replica).await?;
        Ok(anonymous_cart)
    }

    /// Ends the session on the server (the Redis key is deleted) and in the browser
    /// (the layer removes the cookie once the session is empty).
    pub async fn log_out(&self) -> SessionResult<()> {
        Ok(self.0.flush().await?)
    }

    pub async fn anonymous_cart_id(&self) -> SessionResult<Option<String>> {
        Ok(self.0.get::<String>(key::CART_ID).await?)
    }

    /// The visitor's anonymous cart id, creating one (and so the session) if needed.
    pub async fn ensure_anonymous_cart_id(&self, replica: &str) -> SessionResult<String> {
        if let Some(id) = self.anonymous_cart_id().await? {
            return Ok(id);
        }
        let id = random_token();
        self.0.insert(key::CART_ID, &id).await?;
        self.0.insert(key::CREATED_BY, replica).await?;
        Ok(id)
    }

    /// True when this cookie names a session that was ended a moment ago (logged
    /// out, or replaced by a login's new id): a write sent with it is refused.
    pub async fn ended(&self) -> SessionResult<bool> {
        Ok(self.0.get_value(key::ENDED).await?.is_some())
    }

    /// Whose cart this visitor sees: the user's, or the anonymous one this session
    /// points at; `None` for a visitor who never added anything.
    pub async fn cart_owner(&self) -> SessionResult<Option<CartOwner>> {
        Ok(match self.user().await? {
            Some(user) => Some(CartOwner::User(user.id)),
            None => self.anonymous_cart_id().await?.map(CartOwner::Anonymous),
        })
    }

    /// The cart to change: as [`Self::cart_owner`], creating an anonymous cart
    /// (and so the session) for a visitor who has none yet.
    ///
    /// A new anonymous cart's session is saved at once, before the cart is written:
    /// a cart the visitor's session does not point at would be lost to them.
    pub async fn cart_owner_or_new(&self, replica: &str) -> SessionResult<CartOwner> {
        if let Some(owner) = self.cart_owner().await? {
            return Ok(owner);
        }
        if self.ended().await? {
            return Err(AppError::Conflict(SESSION_ENDED.to_owned()));
        }
        let cart_id = self.ensure_anonymous_cart_id(replica).await?;
        self.0.save().await?;
        Ok(CartOwner::Anonymous(cart_id))
    }

    pub async fn push_flash(&self, flash: Flash) -> SessionResult<()> {
        let mut all = self
            .0
            .get::<Vec<Flash>>(key::FLASH)
            .await?
            .unwrap_or_default();
        all.push(flash);
        // A visitor who never loads a page after many actions keeps only the newest few.
        if all.len() > 3 {
            all.remove(0);
        }
        Ok(self.0.insert(key::FLASH, all).await?)
    }

    /// Flash messages to show now; removing them is a session write, so only done when there are some.
    pub async fn take_flashes(&self) -> SessionResult<Vec<Flash>> {
        if self.0.get_value(key::FLASH).await?.is_none() {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .remove::<Vec<Flash>>(key::FLASH)
            .await?
            .unwrap_or_default())
    }

    /// Which replica created this session (shown by the session inspector).
    pub async fn created_by(&self) -> SessionResult<Option<String>> {
        Ok(self.0.get::<String>(key::CREATED_BY).await?)
    }

    pub async fn remember(&self) -> SessionResult<bool> {
        Ok(self.0.get::<bool>(key::REMEMBER).await?.unwrap_or(false))
    }

    pub async fn login_at(&self) -> SessionResult<Option<i64>> {
        Ok(self.0.get::<i64>(key::LOGIN_AT).await?)
    }

    pub async fn seen_at(&self) -> SessionResult<Option<i64>> {
        Ok(self.0.get::<i64>(key::SEEN_AT).await?)
    }
}

/// Slides the idle deadline of a logged-in reader, at most once per
/// [`Lifetimes::keep_alive_interval`]: a small write now and then instead of one per request.
pub async fn keep_alive(
    session: &Session,
    lifetimes: &Lifetimes,
) -> Result<(), tower_sessions::session::Error> {
    let Some(seen) = session.get::<i64>(key::SEEN_AT).await? else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let interval = lifetimes.keep_alive_interval().as_secs().max(1) as i64;
    if now - seen >= interval {
        session.insert(key::SEEN_AT, now).await?;
    }
    Ok(())
}

/// Before the layer writes a modified session, tell it which cookie to send.
pub async fn apply_cookie_expiry(
    session: &Session,
    lifetimes: &Lifetimes,
) -> Result<(), tower_sessions::session::Error> {
    if session.is_modified() {
        let facts = LifetimeFacts::from_session(session).await?;
        session.set_expiry(Some(lifetimes.cookie_expiry(facts)));
    }
    Ok(())
}

/// 128 random bits, URL-safe: anonymous cart ids.
pub fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            idle: Duration::from_secs(1800),
            remember: Duration::from_secs(30 * 86_400),
            max: Duration::from_secs(7 * 86_400),
            remember_max: Duration::from_secs(30 * 86_400),
            anonymous: Duration::from_secs(7 * 86_400),
        }
    }

    #[test]
    fn idle_deadline_is_capped_by_the_absolute_lifetime() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        let fresh = LifetimeFacts {
            logged_in: true,
            remember: false,
            login_at: now.unix_timestamp(),
        };
        assert_eq!(
            lifetimes().deadline(fresh, now),
            now + Duration::from_secs(1800)
        );
        let old = LifetimeFacts {
            login_at: now.unix_timestamp() - 7 * 86_400 + 60,
            ..fresh
        };
        assert_eq!(
            lifetimes().deadline(old, now),
            now + Duration::from_secs(60)
        );
    }

    #[test]
    fn cookie_is_a_browser_session_cookie_without_remember_me() {
        let facts = LifetimeFacts {
            logged_in: true,
            remember: false,
            login_at: 0,
        };
        assert_eq!(lifetimes().cookie_expiry(facts), Expiry::OnSessionEnd);
        let facts = LifetimeFacts {
            remember: true,
            ..facts
        };
        assert!(matches!(
            lifetimes().cookie_expiry(facts),
            Expiry::OnInactivity(_)
        ));
    }

    #[test]
    fn keep_alive_interval_is_a_few_minutes_at_most() {
        assert_eq!(lifetimes().keep_alive_interval(), Duration::from_secs(300));
        let short = Lifetimes {
            idle: Duration::from_secs(6),
            ..lifetimes()
        };
        assert_eq!(short.keep_alive_interval(), Duration::from_secs(1));
    }
}
