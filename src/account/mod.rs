//! The account pages: who you are, your sessions (end any or all but this one),
//! your password, deleting your account. And what they rest on: the per-user
//! session index and credential epoch ([`index`]).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/account` | username, member since, links; the delete form |
//! | GET | `/account/sessions` | every active session of this user |
//! | POST | `/account/sessions/revoke` | `session` = a session's handle → that session ends |
//! | POST | `/account/sessions/revoke-others` | every session but this one ends |
//! | GET/POST | `/account/password` | change the password; other sessions end |
//! | POST | `/account/delete` | `password` → account, cart and sessions gone |

pub mod agent;
mod handlers;

use axum::{
    routing::{get, post},
    Router,
};
use tokio::task::JoinSet;
use tower_sessions::session::Id;
use tower_sessions::SessionStore as _;

use crate::cart::{CartOwner, Lines};
use crate::error::{AppError, Result};
use crate::session::{SessionFacts, ShopSession};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(handlers::account_page))
        .route("/account/sessions", get(handlers::sessions_page))
        .route("/account/sessions/revoke", post(handlers::revoke))
        .route(
            "/account/sessions/revoke-others",
            post(handlers::revoke_others),
        )
        .route(
            "/account/password",
            get(handlers::password_page).post(handlers::change_password),
        )
        .route("/account/delete", post(handlers::delete_account))
}

/// The cart lines a page shows, with the session's user checked on the way.
///
/// For a logged-in visitor the cart and the user's credential epoch are read in
/// one Redis command (one script on the user's hash slot), so checking the epoch
/// costs a page view nothing: one `GET` of the session and one command for the
/// cart. A stale session is ended here and the page is drawn anonymous.
///
/// And one round trip, not two, for a visitor this replica has served before: the
/// cart's key comes from the session, but the replica remembers whose session it
/// was ([`UserHints`]) and sends both commands at once. The guess is checked
/// against the session as read; a cart read for a session that turns out to be
/// gone or someone else's is discarded and read again. Each command touches one
/// key (one slot), so this works on Redis Cluster too.
pub async fn page_cart(state: &AppState, session: &ShopSession) -> Result<Lines> {
    if !state.index.is_redis() {
        return owner_cart(state, session).await;
    }
    let id = session.inner().id();
    if let Some((id, guessed)) = id.and_then(|id| Some((id, state.user_hints.get(id)?))) {
        let owner = CartOwner::User(guessed);
        let epoch_key = crate::session::index::epoch_key(guessed);
        let (record, read) = tokio::join!(
            state.sessions.load(&id),
            state.carts.lines_and_counter(&owner, &epoch_key)
        );
        let record = record?;
        let claimed =
            crate::session::prefetch::with_prefetched(id, record, session.claimed_user_id())
                .await?;
        if claimed == Some(guessed) {
            let (lines, epoch) = read?;
            if let Some(epoch) = epoch {
                if session.settle(epoch).await?.is_some() {
                    return Ok(lines);
                }
            }
        }
        // Someone else's session now, or none: the read is discarded.
        state.user_hints.forget(id);
    }
    if let Some(user_id) = session.claimed_user_id().await? {
        let (lines, epoch) = state
            .carts
            .lines_and_counter(
                &CartOwner::User(user_id),
                &crate::session::index::epoch_key(user_id),
            )
            .await?;
        if let Some(epoch) = epoch {
            if session.settle(epoch).await?.is_some() {
                if let Some(id) = session.inner().id() {
                    state.user_hints.remember(id, user_id);
                }
                return Ok(lines);
            }
        }
    }
    owner_cart(state, session).await
}

/// The cart of whoever the session says owns it (anonymous visitors, dev mode).
async fn owner_cart(state: &AppState, session: &ShopSession) -> Result<Lines> {
    match session.cart_owner().await? {
        Some(owner) => state.carts.lines(&owner).await.map_err(AppError::from),
        None => Ok(Lines::new()),
    }
}

/// Which user each session this replica served belonged to: a guess that lets a
/// page read the session and the cart in one round trip. Bounded: when full it
/// starts over (a miss only costs the second round trip).
#[derive(Debug, Default)]
pub struct UserHints(std::sync::Mutex<std::collections::HashMap<Id, i64>>);

impl UserHints {
    const CAPACITY: usize = 100_000;

    pub fn get(&self, id: Id) -> Option<i64> {
        self.0.lock().expect("hints lock").get(&id).copied()
    }

    pub fn remember(&self, id: Id, user_id: i64) {
        let mut hints = self.0.lock().expect("hints lock");
        if hints.len() >= Self::CAPACITY {
            hints.clear();
        }
        hints.insert(id, user_id);
    }

    pub fn forget(&self, id: Id) {
        self.0.lock().expect("hints lock").remove(&id);
    }
}

/// One live session of a user, as the sessions page lists it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub id: Id,
    pub facts: SessionFacts,
}

/// Every live session of the user, oldest login first. Reads the index and each
/// session it names; ids whose session ended (expired, logged out elsewhere, or
/// from before the last credential change) are pruned from the index.
pub async fn live_sessions(state: &AppState, user_id: i64) -> Result<Vec<LiveSession>> {
    let members = state.index.index_members(user_id).await?;
    let epoch = state.index.epoch(user_id).await?;
    // Read at once: each GET is its own key (own slot), pipelined on the connection.
    let mut reads = JoinSet::new();
    for (order, member) in members.iter().enumerate() {
        let store = state.sessions.clone();
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
                let facts = SessionFacts::from_record(&record);
                if facts.user_id != Some(user_id) {
                    ended.push(member);
                } else if facts.epoch < epoch {
                    stale.push(id);
                    ended.push(member);
                } else {
                    live.push((order, LiveSession { id, facts }));
                }
            }
            None => ended.push(member),
        }
    }
    for id in stale {
        state.sessions.delete(&id).await?;
    }
    state.index.index_remove(user_id, &ended).await?;
    live.sort_by_key(|(order, _)| *order);
    Ok(live.into_iter().map(|(_, s)| s).collect())
}

/// Ends the given sessions of a user: their keys are deleted and they leave the index.
pub async fn end_sessions(state: &AppState, user_id: i64, ids: &[Id]) -> Result<()> {
    for id in ids {
        state.sessions.delete(id).await?;
    }
    let members: Vec<String> = ids.iter().map(Id::to_string).collect();
    state
        .index
        .index_remove(user_id, &members)
        .await
        .map_err(AppError::from)
}

/// A replayed login form: ends the session(s) its first try created. Returns
/// whether there was one.
pub async fn end_sessions_from_submission(
    state: &AppState,
    user_id: i64,
    submission: &str,
) -> Result<bool> {
    let earlier: Vec<Id> = live_sessions(state, user_id)
        .await?
        .into_iter()
        .filter(|s| s.facts.submission.as_deref() == Some(submission))
        .map(|s| s.id)
        .collect();
    end_sessions(state, user_id, &earlier).await?;
    Ok(!earlier.is_empty())
}
