//! The storefront crate as the tests see it. Every path into the crate that a
//! test or a helper uses is named here, once, so that moving a module in `src/`
//! changes one line here and nothing in the tests.

use storefront::session::index;

/// The settings the app starts with.
pub type Config = storefront::config::Config;
/// What every request handler shares (a running app's database pool and stores).
pub type AppState = storefront::state::AppState;
/// The app, built from a [`Config`] and run in-process.
pub type Application = storefront::Application;

/// A Redis client pool, connected the way the app connects.
pub async fn connect_redis(
    url: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<fred::prelude::Pool> {
    storefront::connect_redis(url, timeout).await
}

/// The Redis key of a user's session index (their session ids, scored by login time).
pub fn session_index(user_id: i64) -> String {
    index::index_key(user_id)
}

/// Most sessions a user may have at once; a new login ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = index::MAX_SESSIONS_PER_USER;

/// The Redis key of a logged-in user's cart.
pub fn user_cart(user_id: i64) -> String {
    storefront::cart::CartOwner::User(user_id).redis_key()
}

/// The catalog's categories: (slug, name).
pub const CATEGORIES: &[(&str, &str)] = storefront::catalog::CATEGORIES;

/// The demo account the app creates at start (`Config::demo_user`).
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-pass-123";
