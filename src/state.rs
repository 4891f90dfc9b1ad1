//! What every handler can reach: built once at start, cloned cheaply per request.

use std::sync::Arc;

use fred::prelude::Pool;

use crate::auth::LoginThrottle;
use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::session::Lifetimes;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// SQLite or Postgres, by `DATABASE_URL` (src/db.rs).
    pub db: crate::db::Db,
    /// `None` in in-memory dev mode.
    pub redis: Option<Pool>,
    pub carts: CartStore,
    pub throttle: LoginThrottle,
    pub catalog: Arc<Catalog>,
    pub lifetimes: Lifetimes,
    pub replica: Arc<str>,
}
