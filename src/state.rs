//! What every handler can reach: built once at start, cloned cheaply per request.

use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fred::prelude::Pool;

use crate::auth::LoginThrottle;
use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::session::{Lifetimes, SessionIndex, SessionStore};

/// The application's shared state. Every middleware and handler that asks for it
/// clones it, several times per request: one reference count, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

/// The session extractor takes the index from the app's state (`session::typed`).
impl axum::extract::FromRef<AppState> for SessionIndex {
    fn from_ref(state: &AppState) -> Self {
        state.index.clone()
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub config: Arc<Config>,
    /// SQLite or Postgres, by `DATABASE_URL` (src/db.rs).
    pub db: crate::db::Db,
    /// `None` in in-memory dev mode.
    pub redis: Option<Pool>,
    pub carts: CartStore,
    pub throttle: LoginThrottle,
    /// The line for this replica's password hashing slots (`auth::queue`).
    pub hashing: crate::auth::queue::HashingLine,
    /// Per-user session index and credential epoch.
    pub index: SessionIndex,
    /// The session store, for the account pages that list and end sessions.
    pub sessions: SessionStore,
    pub catalog: Arc<Catalog>,
    pub lifetimes: Lifetimes,
    pub replica: Arc<str>,
    /// Whose session each session id was, as last seen here (`web::page`).
    pub user_hints: Arc<crate::session::prefetch::UserHints>,
    /// Set on SIGTERM: `/readyz` fails and every response closes its connection.
    pub draining: Arc<AtomicBool>,
}
