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
use std::sync::{Arc, Mutex};
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

use crate::account::Accounts;
use crate::cart::{CartOwner, EpochGuard};
use crate::error::AppError;
use crate::state::AppState;
use crate::token;

/// The cookie's name: short, and says nothing about the framework behind it.
pub const COOKIE_NAME: &str = "sid";

/// The cookie's name over HTTPS (`COOKIE_SECURE=true`): the `__Host-` prefix makes
/// browsers refuse it unless it is `Secure`, has `Path=/` and no `Domain`, so no
/// sibling subdomain and no plain-HTTP page can plant or overwrite it.
pub const SECURE_COOKIE_NAME: &str = "__Host-sid";

pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}

/// tower-sessions builds the cookie that removes `sid` at logout from the request's
/// cookie, without `Secure`; browsers ignore a `__Host-` cookie without it, so the
/// logout would leave the (dead) cookie behind. This adds `Secure` to that header.
pub async fn secure_cookie_removal(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header::SET_COOKIE, HeaderValue};
    let mut response = next.run(request).await;
    let prefix = format!("{SECURE_COOKIE_NAME}=");
    let fixed: Vec<HeaderValue> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| match value.to_str() {
            Ok(text)
                if text.starts_with(&prefix)
                    && !text
                        .split(';')
                        .any(|a| a.trim().eq_ignore_ascii_case("secure")) =>
            {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| value.clone())
            }
            _ => value.clone(),
        })
        .collect();
    if !fixed.is_empty() {
        response.headers_mut().remove(SET_COOKIE);
        for value in fixed {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

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
    /// The user's credential epoch when this login started (`account::Accounts`).
    pub const EPOCH: &str = "ep";
    /// The opaque handle that names this session on the sessions page and in the
    /// logout form (never the session id).
    pub const HANDLE: &str = "h";
    /// Browser and OS, from the User-Agent at login.
    pub const AGENT: &str = "ua";
    /// The client address at login.
    pub const CLIENT: &str = "ip";
    /// The login form's one-time submission id.
    pub const SUBMISSION: &str = "sub";
    /// The last account form (password change) applied in this session.
    pub const APPLIED: &str = "done";
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
    /// The per-user session index, told about every new logged-in session.
    accounts: Accounts,
}

#[derive(Debug, Clone)]
enum Backend {
    Redis { store: RedisStore<Pool>, pool: Pool },
    Memory(MemoryStore),
}

impl SessionStoreWrapper {
    pub fn redis(pool: Pool, lifetimes: Lifetimes, accounts: Accounts) -> Self {
        let store = RedisStore::new(pool.clone());
        SessionStoreWrapper {
            backend: Backend::Redis { store, pool },
            lifetimes,
            accounts,
        }
    }

    pub fn memory(lifetimes: Lifetimes, accounts: Accounts) -> Self {
        SessionStoreWrapper {
            backend: Backend::Memory(MemoryStore::default()),
            lifetimes,
            accounts,
        }
    }

    /// When this record's key is to expire, from what the record says of itself.
    fn deadline(&self, record: &Record) -> OffsetDateTime {
        let facts = LifetimeFacts::from_record(&record.data);
        self.lifetimes.deadline(facts, OffsetDateTime::now_utc())
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
impl SessionStore for SessionStoreWrapper {
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
            Backend::Redis { store, pool } => {
                connected(pool)?;
                store.create(record).await?
            }
            Backend::Memory(store) => store.create(record).await?,
        }
        if let Some(user_id) = record.data.get(key::USER_ID).and_then(Value::as_i64) {
            let login_at = LifetimeFacts::from_record(&record.data).login_at;
            let evicted = self
                .accounts
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
            Backend::Redis { pool, .. } => {
                let saved = SavedRecord {
                    id: &record.id,
                    data: &record.data,
                    expiry_date,
                };
                save_if_live(connected(pool)?, &saved).await
            }
            Backend::Memory(store) => {
                // The dev twin has no script; check first (one process, one lock away).
                if let Some(current) = store.load(&record.id).await? {
                    if !current.data.contains_key(key::ENDED) {
                        let mut record = record.clone();
                        record.expiry_date = expiry_date;
                        store.save(&record).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        // Read already, together with the cart (`account::page_cart`)?
        if let Some(record) = take_prefetched(id) {
            return Ok(record);
        }
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

tokio::task_local! {
    /// A session record read ahead of the session layer's own lazy load, in the
    /// same round trip as the cart (see `account::page_cart`). The load of this
    /// request's session takes it instead of asking Redis again.
    static PREFETCHED: std::cell::RefCell<Option<(Id, Option<Record>)>>;
}

/// Runs `work` with `record` standing in for the next load of session `id`.
pub async fn with_prefetched<F: std::future::Future>(
    id: Id,
    record: Option<Record>,
    work: F,
) -> F::Output {
    PREFETCHED
        .scope(std::cell::RefCell::new(Some((id, record))), work)
        .await
}

fn take_prefetched(id: &Id) -> Option<Option<Record>> {
    PREFETCHED
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_ref() {
                Some((prefetched, _)) if prefetched == id => slot.take().map(|(_, r)| r),
                _ => None,
            }
        })
        .ok()
        .flatten()
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

async fn save_if_live(client: &Client, record: &SavedRecord<'_>) -> session_store::Result<()> {
    let bytes =
        rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let _saved: i64 = SAVE_SCRIPT
        .evalsha_with_reload(
            client,
            record.id.to_string(),
            vec![
                fred::types::Value::Bytes(bytes.into()),
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
    /// This session's opaque handle: the logout form's one-time `submission` value
    /// (a logout applies once per session, so a replayed one changes nothing).
    pub handle: String,
}

/// What a write sent with an ended session's cookie is told.
pub const SESSION_ENDED: &str = "You logged in or out in another tab or window while this was \
being sent, so nothing was changed. Please check your cart and try again.";

/// What a login records in the new session, beyond the user.
#[derive(Debug, Clone)]
pub struct LoginFacts {
    pub remember: bool,
    pub replica: String,
    /// The user's credential epoch, read before the password hash was.
    pub epoch: i64,
    pub client: std::net::IpAddr,
    /// "Firefox on Linux", from the User-Agent.
    pub agent: String,
    /// The login form's one-time submission id, if it had one.
    pub submission: Option<String>,
}

/// One session of a user as the sessions page shows it, read from its record.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub user_id: Option<i64>,
    pub epoch: i64,
    pub handle: String,
    pub agent: String,
    pub client: String,
    pub login_at: i64,
    pub seen_at: i64,
    pub replica: String,
    pub remember: bool,
    pub submission: Option<String>,
}

impl SessionFacts {
    pub fn from_record(record: &Record) -> Self {
        let data = &record.data;
        let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let number = |k: &str| data.get(k).and_then(Value::as_i64).unwrap_or(0);
        SessionFacts {
            user_id: data.get(key::USER_ID).and_then(Value::as_i64),
            epoch: number(key::EPOCH),
            handle: text(key::HANDLE),
            agent: text(key::AGENT),
            client: text(key::CLIENT),
            login_at: number(key::LOGIN_AT),
            seen_at: number(key::SEEN_AT),
            replica: text(key::CREATED_BY),
            remember: data
                .get(key::REMEMBER)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            submission: data
                .get(key::SUBMISSION)
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// This request's verdict on the session's user, shared by every extractor of the
/// request (the page layout and the handler ask once between them).
#[derive(Debug, Clone, Default)]
struct UserCheck(Arc<Mutex<Option<Option<SessionUser>>>>);

/// Typed access to the session: handlers never touch raw keys.
#[derive(Debug, Clone)]
pub struct ShopSession {
    session: Session,
    accounts: Accounts,
    checked: UserCheck,
}

impl FromRequestParts<AppState> for ShopSession {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, msg)| {
                AppError::Internal(anyhow::anyhow!("session layer missing: {msg}"))
            })?;
        let checked = match parts.extensions.get::<UserCheck>() {
            Some(checked) => checked.clone(),
            None => {
                let checked = UserCheck::default();
                parts.extensions.insert(checked.clone());
                checked
            }
        };
        Ok(ShopSession {
            session,
            accounts: state.accounts.clone(),
            checked,
        })
    }
}

type SessionResult<T> = Result<T, AppError>;

impl ShopSession {
    pub fn inner(&self) -> &Session {
        &self.session
    }

    fn remember_verdict(&self, user: Option<SessionUser>) {
        *self.checked.0.lock().expect("user check lock") = Some(user);
    }

    fn known_verdict(&self) -> Option<Option<SessionUser>> {
        self.checked.0.lock().expect("user check lock").clone()
    }

    /// The user this session says it belongs to, not yet checked against the
    /// user's credential epoch, with the epoch the session carries.
    async fn claimed_user(&self) -> SessionResult<Option<(SessionUser, i64)>> {
        let Some(id) = self.session.get::<i64>(key::USER_ID).await? else {
            return Ok(None);
        };
        let name = self
            .session
            .get::<String>(key::USER_NAME)
            .await?
            .unwrap_or_default();
        let handle = self
            .session
            .get::<String>(key::HANDLE)
            .await?
            .unwrap_or_default();
        let epoch = self.session.get::<i64>(key::EPOCH).await?.unwrap_or(0);
        Ok(Some((SessionUser { id, name, handle }, epoch)))
    }

    /// The user id this session claims, unchecked: for reading the user's cart and
    /// credential epoch in one step ([`Self::settle`]).
    pub async fn claimed_user_id(&self) -> SessionResult<Option<i64>> {
        if let Some(verdict) = self.known_verdict() {
            return Ok(verdict.map(|u| u.id));
        }
        Ok(self.session.get::<i64>(key::USER_ID).await?)
    }

    /// The logged-in user, checked: a session from before the user's last password
    /// change, account deletion or "sign out everywhere" is ended here and the
    /// visitor is anonymous. The check reads the user's credential epoch once per
    /// request (page views read it together with the cart: `account::page_cart`).
    pub async fn user(&self) -> SessionResult<Option<SessionUser>> {
        if let Some(verdict) = self.known_verdict() {
            return Ok(verdict);
        }
        let Some((user, _)) = self.claimed_user().await? else {
            self.remember_verdict(None);
            return Ok(None);
        };
        let current = self.accounts.epoch(user.id).await?;
        self.settle(current).await
    }

    /// Decides the session's user given the user's current credential epoch.
    pub async fn settle(&self, current_epoch: i64) -> SessionResult<Option<SessionUser>> {
        let Some((user, epoch)) = self.claimed_user().await? else {
            self.remember_verdict(None);
            return Ok(None);
        };
        if epoch >= current_epoch {
            self.remember_verdict(Some(user.clone()));
            return Ok(Some(user));
        }
        tracing::info!(
            user_id = user.id,
            epoch,
            current_epoch,
            "session from before a credential change ended"
        );
        if let Some(id) = self.session.id() {
            let _ = self.accounts.index_remove(user.id, &[id.to_string()]).await;
        }
        self.session.flush().await?;
        self.remember_verdict(None);
        Ok(None)
    }

    /// Logs `user` in: a new session id (so an id planted before login is worthless:
    /// session fixation), then the user's facts. Returns the anonymous cart id the
    /// visitor had, for the caller to merge. The new session joins the user's index
    /// when it is saved ([`SessionStoreWrapper`]'s `create`).
    pub async fn log_in(
        &self,
        user: &SessionUser,
        facts: &LoginFacts,
    ) -> SessionResult<(SessionUser, Option<String>)> {
        let anonymous_cart = self.session.remove::<String>(key::CART_ID).await?;
        // A session that was someone's login leaves their index (its key goes now).
        if let (Some(id), Some(previous)) = (
            self.session.id(),
            self.session.get::<i64>(key::USER_ID).await?,
        ) {
            let _ = self
                .accounts
                .index_remove(previous, &[id.to_string()])
                .await;
        }
        if self.session.id().is_some() {
            self.session.cycle_id().await?;
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let handle = token::random();
        // Start from a clean record: nothing of a previous user's login stays.
        for stale in [key::SUBMISSION, key::FLASH] {
            let _ = self.session.remove_value(stale).await?;
        }
        self.session.insert(key::USER_ID, user.id).await?;
        self.session.insert(key::USER_NAME, &user.name).await?;
        self.session.insert(key::REMEMBER, facts.remember).await?;
        self.session.insert(key::LOGIN_AT, now).await?;
        self.session.insert(key::SEEN_AT, now).await?;
        self.session.insert(key::CREATED_BY, &facts.replica).await?;
        self.session.insert(key::EPOCH, facts.epoch).await?;
        self.session.insert(key::HANDLE, &handle).await?;
        self.session.insert(key::AGENT, &facts.agent).await?;
        self.session
            .insert(key::CLIENT, facts.client.to_string())
            .await?;
        if let Some(submission) = &facts.submission {
            self.session.insert(key::SUBMISSION, submission).await?;
        }
        let user = SessionUser {
            id: user.id,
            name: user.name.clone(),
            handle,
        };
        self.remember_verdict(Some(user.clone()));
        Ok((user, anonymous_cart))
    }

    /// Carries this session over to a raised epoch ("sign out other sessions").
    pub async fn carry_to_epoch(&self, epoch: i64) -> SessionResult<()> {
        self.session.insert(key::EPOCH, epoch).await?;
        Ok(())
    }

    /// The submission id of the last account form applied in this session.
    pub async fn applied_submission(&self) -> SessionResult<Option<String>> {
        Ok(self.session.get::<String>(key::APPLIED).await?)
    }

    pub async fn record_submission(&self, id: &str) -> SessionResult<()> {
        self.session.insert(key::APPLIED, id).await?;
        Ok(())
    }

    /// After a password change: this session gets a new id and the new epoch, so it
    /// survives the change that ends every other session of the user.
    pub async fn renew_after_credential_change(&self, epoch: i64) -> SessionResult<()> {
        self.session.cycle_id().await?;
        self.session.insert(key::EPOCH, epoch).await?;
        Ok(())
    }

    /// Ends the session on the server (the Redis key is deleted) and in the browser
    /// (the layer removes the cookie once the session is empty).
    pub async fn log_out(&self) -> SessionResult<()> {
        if let (Some(id), Some(user_id)) = (
            self.session.id(),
            self.session.get::<i64>(key::USER_ID).await?,
        ) {
            self.accounts
                .index_remove(user_id, &[id.to_string()])
                .await?;
        }
        self.session.flush().await?;
        self.remember_verdict(None);
        Ok(())
    }

    pub async fn anonymous_cart_id(&self) -> SessionResult<Option<String>> {
        Ok(self.session.get::<String>(key::CART_ID).await?)
    }

    /// The visitor's anonymous cart id, creating one (and so the session) if needed.
    pub async fn ensure_anonymous_cart_id(&self, replica: &str) -> SessionResult<String> {
        if let Some(id) = self.anonymous_cart_id().await? {
            return Ok(id);
        }
        let id = token::random();
        self.session.insert(key::CART_ID, &id).await?;
        self.session.insert(key::CREATED_BY, replica).await?;
        Ok(id)
    }

    /// True when this cookie names a session that was ended a moment ago (logged
    /// out, or replaced by a login's new id): a write sent with it is refused.
    pub async fn ended(&self) -> SessionResult<bool> {
        Ok(self.session.get_value(key::ENDED).await?.is_some())
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
        self.session.save().await?;
        Ok(CartOwner::Anonymous(cart_id))
    }

    /// A guarded change passed its epoch check: `user` is current, and the rest of
    /// the request need not ask Redis again.
    pub fn epoch_confirmed(&self, user: SessionUser) {
        self.remember_verdict(Some(user));
    }

    /// The user a logged-in session claims, with the guard a change to their cart
    /// must pass (the cart script checks the user's credential epoch), when the
    /// user has not been checked yet in this request and carts are in Redis;
    /// `None` otherwise: then [`Self::cart_owner`] checks the user the plain way.
    pub async fn user_unchecked(&self) -> SessionResult<Option<(SessionUser, EpochGuard)>> {
        if self.known_verdict().is_some() || !self.accounts.is_redis() {
            return Ok(None);
        }
        Ok(self.claimed_user().await?.map(|(user, epoch)| {
            let guard = EpochGuard {
                key: crate::account::index::epoch_key(user.id),
                session_epoch: epoch,
            };
            (user, guard)
        }))
    }

    pub async fn push_flash(&self, flash: Flash) -> SessionResult<()> {
        let mut all = self
            .session
            .get::<Vec<Flash>>(key::FLASH)
            .await?
            .unwrap_or_default();
        all.push(flash);
        // A visitor who never loads a page after many actions keeps only the newest few.
        if all.len() > 3 {
            all.remove(0);
        }
        Ok(self.session.insert(key::FLASH, all).await?)
    }

    /// Flash messages to show now; removing them is a session write, so only done when there are some.
    pub async fn take_flashes(&self) -> SessionResult<Vec<Flash>> {
        if self.session.get_value(key::FLASH).await?.is_none() {
            return Ok(Vec::new());
        }
        Ok(self
            .session
            .remove::<Vec<Flash>>(key::FLASH)
            .await?
            .unwrap_or_default())
    }

    /// Which replica created this session (shown by the session inspector).
    pub async fn created_by(&self) -> SessionResult<Option<String>> {
        Ok(self.session.get::<String>(key::CREATED_BY).await?)
    }

    pub async fn remember(&self) -> SessionResult<bool> {
        Ok(self
            .session
            .get::<bool>(key::REMEMBER)
            .await?
            .unwrap_or(false))
    }

    pub async fn login_at(&self) -> SessionResult<Option<i64>> {
        Ok(self.session.get::<i64>(key::LOGIN_AT).await?)
    }

    pub async fn seen_at(&self) -> SessionResult<Option<i64>> {
        Ok(self.session.get::<i64>(key::SEEN_AT).await?)
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
