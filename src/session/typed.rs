//! [`ShopSession`]: typed access to the session for the handlers, which never
//! touch raw keys. Logging in and out, the checked user, the cart's owner.

use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use time::OffsetDateTime;
use tower_sessions::Session;

use super::flash::Flash;
use super::index::{epoch_key, SessionIndex};
use super::record::{key, Login};
use crate::cart::{CartOwner, EpochGuard};
use crate::error::AppError;
use crate::token;

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

/// This request's verdict on the session's user, shared by every extractor of the
/// request (the page layout and the handler ask once between them).
#[derive(Debug, Clone, Default)]
struct UserCheck(Arc<Mutex<Option<Option<SessionUser>>>>);

/// Why the session this browser's cookie named is over, when it ended without
/// the browser's doing: what the next page tells the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedOut {
    /// Revoked from another session, or from before a password change made elsewhere.
    Elsewhere,
    /// The cookie named a session the server no longer has: it ran out of time.
    TimedOut,
}

/// What this request learnt about its session's end, shared like [`UserCheck`]:
/// whether the request came with a session cookie at all, and why that session is over.
#[derive(Debug, Clone, Default)]
struct Arrival(Arc<Mutex<(bool, Option<SignedOut>)>>);

/// Typed access to the session: handlers never touch raw keys.
#[derive(Debug, Clone)]
pub struct ShopSession {
    session: Session,
    index: SessionIndex,
    checked: UserCheck,
    arrival: Arrival,
}

/// Any router whose state holds the session index can hand out a `ShopSession`
/// (axum's `FromRef` substate): the session module needs nothing else of the app.
impl<S> FromRequestParts<S> for ShopSession
where
    S: Send + Sync,
    SessionIndex: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
        // Noted by the first extractor, before anything is read: the session layer
        // forgets the id of a cookie whose session it cannot find.
        let arrival = match parts.extensions.get::<Arrival>() {
            Some(arrival) => arrival.clone(),
            None => {
                let arrival = Arrival::default();
                arrival.0.lock().expect("arrival lock").0 = session.id().is_some();
                parts.extensions.insert(arrival.clone());
                arrival
            }
        };
        Ok(ShopSession {
            session,
            index: SessionIndex::from_ref(state),
            checked,
            arrival,
        })
    }
}

type SessionResult<T> = Result<T, AppError>;

impl ShopSession {
    /// This session's id; `None` for a visitor who has none yet.
    pub fn id(&self) -> Option<tower_sessions::session::Id> {
        self.session.id()
    }

    /// Saves the session now, instead of after the handler, when a failure is the
    /// page's to explain.
    pub async fn save(&self) -> SessionResult<()> {
        Ok(self.session.save().await?)
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
    /// request (page views read it together with the cart: `web::page`).
    pub async fn user(&self) -> SessionResult<Option<SessionUser>> {
        if let Some(verdict) = self.known_verdict() {
            return Ok(verdict);
        }
        let Some((user, _)) = self.claimed_user().await? else {
            self.remember_verdict(None);
            return Ok(None);
        };
        let current = self.index.epoch(user.id).await?;
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
            let _ = self.index.index_remove(user.id, &[id.to_string()]).await;
        }
        self.session.flush().await?;
        self.remember_verdict(None);
        self.note_signed_out(SignedOut::Elsewhere);
        Ok(None)
    }

    fn note_signed_out(&self, why: SignedOut) {
        self.arrival.0.lock().expect("arrival lock").1 = Some(why);
    }

    /// Why the session this request's cookie named is over, if it ended without
    /// this browser's doing: ended from another device (a tombstone that says so,
    /// or a credential change), or timed out (the cookie names no session at all).
    /// A tombstone is ended here too, so its cookie goes and the visitor is told once.
    pub async fn signed_out(&self) -> SessionResult<Option<SignedOut>> {
        let ended = self.session.get_value(key::ENDED).await?;
        let (had_cookie, known) = *self.arrival.0.lock().expect("arrival lock");
        if known.is_some() {
            return Ok(known);
        }
        let why = match ended {
            Some(why) if why.as_str() == Some(super::store::ENDED_ELSEWHERE) => {
                self.session.flush().await?;
                Some(SignedOut::Elsewhere)
            }
            Some(_) => None,
            None if had_cookie && self.session.id().is_none() => Some(SignedOut::TimedOut),
            None => None,
        };
        if let Some(why) = why {
            self.note_signed_out(why);
        }
        Ok(why)
    }

    /// Logs `user` in: a new session id (so an id planted before login is worthless:
    /// session fixation), then the user's facts. Returns the anonymous cart id the
    /// visitor had, for the caller to merge. The new session joins the user's index
    /// when it is saved ([`SessionStore`]'s `create`).
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
            let _ = self.index.index_remove(previous, &[id.to_string()]).await;
        }
        if self.session.id().is_some() {
            self.session.cycle_id().await?;
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let handle = token::random();
        // Start from a clean record: nothing of a previous user's login stays.
        for stale in [key::SUBMISSION, key::FLASH, key::TRIAL] {
            let _ = self.session.remove_value(stale).await?;
        }
        Login {
            user_id: user.id,
            name: user.name.clone(),
            remember: facts.remember,
            login_at: now,
            seen_at: now,
            replica: facts.replica.clone(),
            epoch: facts.epoch,
            handle: handle.clone(),
            agent: facts.agent.clone(),
            client: facts.client.to_string(),
            submission: facts.submission.clone(),
        }
        .write_to(&self.session)
        .await?;
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
            self.index.index_remove(user_id, &[id.to_string()]).await?;
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
        // A visitor with no session yet: on trial until they come back (`trial`).
        if self.session.id().is_none() {
            self.session.insert(key::TRIAL, true).await?;
        }
        let id = token::random();
        self.session.insert(key::CART_ID, &id).await?;
        self.session.insert(key::CREATED_BY, replica).await?;
        Ok(id)
    }

    /// True when the visitor has a session: the cookie named one the store still
    /// has (live, or ended a moment ago). Reads the record (which the request's
    /// handler reads anyway): a cookie naming no session, made up or expired, is
    /// no session.
    pub async fn exists(&self) -> SessionResult<bool> {
        if self.session.id().is_none() {
            return Ok(false);
        }
        let _ = self.session.get_value(key::CART_ID).await?;
        Ok(self.session.id().is_some())
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
    /// user has not been checked yet in this request;
    /// `None` otherwise: then [`Self::cart_owner`] checks the user the plain way.
    pub async fn user_unchecked(&self) -> SessionResult<Option<(SessionUser, EpochGuard)>> {
        if self.known_verdict().is_some() {
            return Ok(None);
        }
        Ok(self.claimed_user().await?.map(|(user, epoch)| {
            let guard = EpochGuard {
                key: epoch_key(user.id),
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
