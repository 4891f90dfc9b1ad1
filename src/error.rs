//! One error type for the whole application.
//!
//! Handlers return `Result<_, AppError>`. An `AppError` becomes a response that
//! carries only its status and a message meant for the user; the `site_answers`
//! middleware (`web::middleware`) renders it inside the site's layout, together with
//! every other bare error response (an unknown path, a body over the limit, the
//! session layer's empty 500). Internal causes are logged here and never shown.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::redis::StoreError;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request was understood but its content is wrong; the message says what.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("too many attempts")]
    TooManyRequests {
        retry_after: Duration,
        message: String,
    },
    /// The request conflicts with a change made meanwhile (the visitor logged in or
    /// out in another tab): nothing was changed; the message says what happened.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Redis (sessions, carts) or the database cannot be reached right now: nothing changed.
    #[error("{0} unavailable: {1:#}")]
    Unavailable(Dependency, anyhow::Error),
    /// A write was sent but no answer came back: it may or may not have been
    /// applied. The page says where to look before trying again.
    #[error("outcome unknown: {1:#}")]
    OutcomeUnknown(LookAt, anyhow::Error),
    /// Redis (`maxmemory`, `noeviction`) or the database's disk refused a write
    /// for want of room: nothing changed.
    #[error("{0} full: {1:#}")]
    Full(Dependency, anyhow::Error),
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// What a 503 is about: the page says which part of the shop cannot work just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// Redis: sessions, carts, the login throttle.
    SessionStore,
    /// SQLite or Postgres: users, products, orders.
    Database,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dependency::SessionStore => "session store",
            Dependency::Database => "database",
        })
    }
}

/// What the error page shows; put in the response's extensions for `site_answers`.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

/// Marks a response whose write may or may not have been applied (for
/// `site_answers`), with where the visitor can see whether it was.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeUnknown(pub LookAt);

/// Where a visitor sees whether a write whose answer was lost was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookAt {
    Cart,
    Orders,
    /// A login cut off between moving the visitor's cart and starting the session:
    /// logging in again finishes it.
    Login,
}

impl LookAt {
    /// The page, and the link's words.
    pub fn link(self) -> (&'static str, &'static str) {
        match self {
            LookAt::Cart => ("/cart", "Look at your cart"),
            LookAt::Orders => ("/orders", "Look at your orders"),
            LookAt::Login => ("/login", "Log in again"),
        }
    }
}

/// How long a client should wait before retrying after a 503.
pub const UNAVAILABLE_RETRY_AFTER: &str = "5";

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(..) | AppError::OutcomeUnknown(..) | AppError::Full(..) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn user_message(&self) -> String {
        match self {
            AppError::BadRequest(msg) | AppError::Forbidden(msg) | AppError::Conflict(msg) => {
                msg.clone()
            }
            AppError::OutcomeUnknown(LookAt::Cart, _) => OUTCOME_UNKNOWN.to_owned(),
            AppError::OutcomeUnknown(LookAt::Orders, _) => ORDER_OUTCOME_UNKNOWN.to_owned(),
            AppError::OutcomeUnknown(LookAt::Login, _) => LOGIN_INTERRUPTED.to_owned(),
            AppError::Unavailable(Dependency::Database, _) => DATABASE_UNAVAILABLE.to_owned(),
            AppError::Full(Dependency::Database, _) => DATABASE_FULL.to_owned(),
            AppError::Full(Dependency::SessionStore, _) => STORE_FULL.to_owned(),
            AppError::TooManyRequests { message, .. } => message.clone(),
            other => default_message(other.status()).to_owned(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        AppError::BadRequest(msg.into())
    }

    /// Redis cannot be reached: nothing changed.
    pub fn session_store_unavailable(cause: impl Into<anyhow::Error>) -> Self {
        AppError::Unavailable(Dependency::SessionStore, cause.into())
    }
}

/// The database's disk is full: the write was rolled back.
pub const DATABASE_FULL: &str = "The shop's database has no room to save anything right now, \
so nothing was saved: no account, order or password was created or changed. Browsing and your \
cart still work; please try again later.";

/// The users' database (SQLite or Postgres) cannot be reached: sessions and carts are fine.
pub const DATABASE_UNAVAILABLE: &str = "The shop's database is unavailable right now, so nothing \
was changed. Browsing and your cart still work; please try again in a few seconds.";

/// A write whose answer never came: never "nothing happened, try again".
pub const OUTCOME_UNKNOWN: &str =
    "We could not confirm whether your change was saved: the session store \
did not answer in time. Please look at your cart before trying again.";

/// An order whose database COMMIT was sent but never answered: it may exist.
pub const ORDER_OUTCOME_UNKNOWN: &str = "We could not confirm whether your order was placed: the \
database did not answer in time. Please look at your orders before trying again.";

/// A login that failed after its first step moved the visitor's cart aside: the
/// visitor is not logged in, and the items wait for the next login.
pub const LOGIN_INTERRUPTED: &str = "We could not finish logging you in: the session store did \
not answer in time. Nothing is lost: log in again, and the items in your cart join your \
account's cart, once.";

/// Redis is full and refuses writes (it must not evict sessions and carts instead).
pub const STORE_FULL: &str = "The shop cannot save changes right now: its session store is full. \
Nothing was changed. You can keep browsing; please try again later.";

/// The sentence shown for a status when nothing more specific is known.
pub fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "The request could not be understood.",
        StatusCode::FORBIDDEN => "That request is not allowed.",
        StatusCode::NOT_FOUND => "There is no page at this address.",
        StatusCode::METHOD_NOT_ALLOWED => "That action is not available at this address.",
        StatusCode::PAYLOAD_TOO_LARGE => "The form sent was too large (16 KiB at most).",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Forms must be sent as application/x-www-form-urlencoded.",
        StatusCode::UNPROCESSABLE_ENTITY => "The form could not be read.",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts. Please wait and try again.",
        StatusCode::REQUEST_TIMEOUT => "The request took too long.",
        StatusCode::SERVICE_UNAVAILABLE => {
            "The session store is unavailable right now, so nothing was changed. Your cart and login are safe; please try again in a few seconds."
        }
        _ => "Something went wrong on our side. Please try again.",
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        // Every session store failure here is Redis being unreachable or timing out.
        AppError::session_store_unavailable(err)
    }
}

impl From<tower_sessions::session_store::Error> for AppError {
    fn from(err: tower_sessions::session_store::Error) -> Self {
        AppError::session_store_unavailable(err)
    }
}

/// What a Redis-backed store's failure tells the user: nothing changed (unavailable,
/// full), or the write may have been applied (unknown).
impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unknown(_) => AppError::OutcomeUnknown(LookAt::Cart, err.into()),
            StoreError::Full(_) => AppError::Full(Dependency::SessionStore, err.into()),
            StoreError::Unavailable(_) => AppError::session_store_unavailable(err),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_full(&err) {
            AppError::Full(Dependency::Database, err.into())
        } else if crate::db::is_unavailable(&err) {
            AppError::Unavailable(Dependency::Database, err.into())
        } else {
            AppError::Internal(anyhow::Error::new(err).context("database"))
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Unavailable(..) | AppError::OutcomeUnknown(..) | AppError::Full(..) => {
                tracing::warn!(error = %self, "dependency unavailable")
            }
            AppError::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "internal error")
            }
            other => tracing::debug!(error = %other, "request refused"),
        }
        let mut response = status.into_response();
        response
            .extensions_mut()
            .insert(ErrorMessage(self.user_message()));
        if let AppError::OutcomeUnknown(look_at, _) = &self {
            response.extensions_mut().insert(OutcomeUnknown(*look_at));
        }
        let headers = response.headers_mut();
        match &self {
            AppError::TooManyRequests { retry_after, .. } => {
                let secs = retry_after.as_secs().max(1).to_string();
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&secs).expect("digits"),
                );
            }
            AppError::Unavailable(..) | AppError::OutcomeUnknown(..) | AppError::Full(..) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER),
                );
            }
            _ => {}
        }
        response
    }
}
