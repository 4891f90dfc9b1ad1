//! A new anonymous visitor is on trial until they come back.
//!
//! Anyone can make anonymous state: a `POST /cart/add` without a cookie creates a
//! session and a cart (rationed per client network, `auth::throttle`). A browser
//! follows the add's redirect with its new cookie at once; a client that floods
//! adds never comes back. So the session and cart a cookie-less add creates carry
//! the [`key::TRIAL`] marker and live `ANON_TRIAL_TTL` (an hour); the first later
//! request that brings the cookie back ends the trial, and both get the full
//! anonymous lifetime (`ANON_CART_TTL`). A login merges the cart as before.
//!
//! Cost: the marker is read from the record the request loaded anyway. Only the
//! request that ends a trial writes: one command on the cart's slot
//! ([`CartStore::end_trial`]) and the session's save without the marker (the
//! only session write a browser's redirected page makes: the add's message rides
//! in the notice cookie, `web::notice`).
//! Two single-key writes, never one script across the session's and the cart's
//! slots (Redis Cluster).

use tower_sessions::session::Id;
use tower_sessions::Session;

use super::record::key;
use crate::cart::CartStore;

/// After a request: if it brought back the cookie of a session on trial, end the
/// trial. `arrived_as` is the session id the request's cookie named; a session
/// created (or replaced) during the request has another id and stays on trial.
///
/// If the cart cannot be extended, the session keeps its marker (and its trial
/// lifetime) and the next request tries again; the page is not failed for it.
pub async fn end_on_return(
    session: &Session,
    arrived_as: Option<Id>,
    carts: &CartStore,
) -> Result<(), tower_sessions::session::Error> {
    if arrived_as.is_none() || session.id() != arrived_as {
        return Ok(());
    }
    if session.get_value(key::TRIAL).await?.is_none() {
        return Ok(());
    }
    if let Some(cart_id) = session.get::<String>(key::CART_ID).await? {
        if let Err(err) = carts.end_trial(&cart_id).await {
            tracing::warn!(error = %err, "a returning visitor's cart is kept on trial; the next request tries again");
            return Ok(());
        }
    }
    session.remove_value(key::TRIAL).await?;
    Ok(())
}
