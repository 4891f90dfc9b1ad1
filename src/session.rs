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
            Backend::Redis { store, .. } => store.create(record).await,
            Backend::Memory(store) => store.create(record).await,
        }
    }

    /// Saves an existing session, only if it still exists.
    ///
    /// The published store does `SET … XX` and then fails to read Redis's "not set"
    /// answer as a boolean when the key is gone (tower-sessions-stores issue 19):
    /// a logout in another tab, an expiry, or a login's `cycle_id` between our load
    /// and our save would become an empty 500. Here a vanished key stays vanished:
    /// the write is dropped, the next request sees no session.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let record = self.with_deadline(record);
        match &self.backend {
            Backend::Redis { pool, .. } => save_if_exists(pool.next(), &record).await,
            Backend::Memory(store) => {
                // The dev twin has no "set if exists"; check first (one process, one lock away).
                if store.load(&record.id).await?.is_some() {
                    store.save(&record).await?;
                }
                Ok(())
            }
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.backend {
            Backend::Redis { store, .. } => store.load(id).await,
            Backend::Memory(store) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.backend {
            Backend::Redis { store, .. } => store.delete(id).await,
            Backend::Memory(store) => store.delete(id).await,
        }
    }
}

async fn save_if_exists(client: &Client, record: &Record) -> session_store::Result<()> {
    let bytes =
        rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let deadline = Expiration::EXAT(record.expiry_date.unix_timestamp());
    // Redis answers OK, or nil when the key no longer exists: both are fine.
    let _: fred::types::Value = client
        .set(
            record.id.to_string(),
            bytes.as_slice(),
            Some(deadline),
            Some(SetOptions::XX),
            false,
        )
        .await
        .map_err(|e| session_store::Error::Backend(e.to_string()))?;
    Ok(())
}

/// A message shown once on the next page ("Added 2 × Blue Teapot to your cart").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
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
    pub fn success(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Success,
            text: text.into(),
        }
    }
    pub fn info(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Info,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }
}

/// The logged-in user as the session knows them: no database lookup per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub id: i64,
    pub name: String,
}

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
    pub async fn cart_owner_or_new(&self, replica: &str) -> SessionResult<CartOwner> {
        match self.cart_owner().await? {
            Some(owner) => Ok(owner),
            None => Ok(CartOwner::Anonymous(
                self.ensure_anonymous_cart_id(replica).await?,
            )),
        }
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
