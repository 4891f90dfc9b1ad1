//! Server-side sessions: what the `sid` cookie points at, how long it lives, and
//! the typed accessors the handlers use. Read the files in this order.
//!
//! For a reader coming from Flask-Session (`SESSION_TYPE = "redis"`):
//!
//! 1. [`cookie`]: the browser holds only `sid` (`__Host-sid` over HTTPS), 128
//!    random bits. `tower_sessions::SessionManagerLayer` (built in `router.rs`)
//!    reads it and hands each handler a lazy `Session`: nothing is fetched until a
//!    handler asks for a value, so an anonymous page view with no cookie costs no
//!    Redis command at all.
//! 2. [`record`]: what a record holds under its short keys (`uid`, `name`, `ep`,
//!    …): a logged-in user's facts, an anonymous visitor's cart id, flash messages.
//!    The cart itself is never in the session (it is a Redis hash, `cart/`).
//! 3. [`store`]: where records live. The first read of a request loads the whole
//!    record with one `GET <session id>`; after the handler, the layer saves it
//!    only if it changed (a script: `SET <id> <msgpack> EX <seconds to its deadline>`, only over
//!    a live record), and sets or removes the cookie. An ended session's key
//!    becomes a one-minute tombstone.
//! 4. [`lifetimes`]: the deadline written to Redis and the cookie's expiry, in one
//!    place for every kind of session; [`lifetimes::keep_alive`] slides it for
//!    users who only read.
//! 5. [`typed`]: [`ShopSession`], what handlers use. **A login writes the session
//!    here**: [`ShopSession::log_in`] gives the visitor a new id (`cycle_id`,
//!    fixation defence) and stores the user's facts; the store's `create` adds the
//!    new session to the user's index. **A page view reads** the record (one
//!    `GET`) and checks the user's credential epoch — together with the cart, in
//!    one more command (`web/page.rs`, with [`prefetch`]).
//! 6. [`index`]: every session of a user (`sessions:{u<id>}`) and their
//!    credential epoch: what "sign out other sessions" and a password change use.
//! 7. [`flash`]: one-time messages for the next page.
//! 8. [`trial`]: the session and cart of a cookie-less add live an hour until
//!    the visitor comes back with the cookie, then the full anonymous lifetime.

pub mod cookie;
pub mod flash;
pub mod index;
pub mod lifetimes;
pub mod prefetch;
pub mod record;
pub mod store;
pub mod trial;
pub mod typed;

pub use cookie::{
    cookie_name, keep_cookies_forward, secure_cookie_removal, COOKIE_NAME, SECURE_COOKIE_NAME,
};
pub use flash::{Flash, FlashKind};
pub use index::SessionIndex;
pub use lifetimes::{apply_cookie_expiry, keep_alive, Lifetimes};
pub use record::Login;
pub use store::SessionStore;
pub use typed::{LoginFacts, SessionUser, ShopSession, SignedOut, SESSION_ENDED};
