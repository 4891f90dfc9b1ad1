//! Login, logout and registration pages.
//!
//! The session steps, in order, are the heart of this project:
//! - login: count the attempt (throttle) → read the user's credential epoch, then
//!   the password hash → check the password → `cycle_id()` (a new session id) →
//!   store the user → merge the anonymous cart into the user's cart → redirect;
//! - logout: `flush()` deletes the session in Redis and the cookie in the browser;
//!   the user's cart stays in `cart:{u<id>}` for the next login, on any device.
//!
//! Each form carries a one-time `submission` id: a login
//! replayed after a lost response replaces the session the first try created
//! instead of adding one; a replayed logout (its id is the session's handle) finds
//! that session gone and changes nothing; a replayed registration finds the account
//! its first try created and says so.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header::USER_AGENT, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::throttle::{LoginVerdict, Outcome};
use super::{password, safe_next, throttled, users, Password, Username};
use crate::domain::SubmissionId;
use crate::error::{AppError, Dependency, LookAt, Result};
use crate::session::{Flash, LoginFacts, SessionUser, ShopSession};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::token;
use crate::web::agent;
use crate::web::client_ip::ClientIp;
use crate::web::notice::Notice;
use crate::web::{form::FormData, page::Layout, page::Page};

/// The routes of this feature, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(log_in))
        .route("/logout", post(log_out))
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginTemplate {
    layout: Layout,
    username: String,
    next: String,
    remember: bool,
    /// "Remember me for N days": REMEMBER_ME_DAYS.
    remember_days: u32,
    error: Option<String>,
    /// A note that is not an error ("your account exists, please log in").
    pub(super) notice: Option<String>,
    submission: String,
}

impl LoginTemplate {
    pub(super) fn new(layout: Layout, username: String, next: String, remember_days: u32) -> Self {
        LoginTemplate {
            layout,
            username,
            next,
            remember: false,
            remember_days,
            error: None,
            notice: None,
            submission: token::random(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    pub(super) next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    page: Page,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> LoginTemplate {
    // A query it cannot read (`next` twice, bad encoding) is no reason to refuse
    // the login form: it goes back to the home page instead.
    let next = query.ok().and_then(|Query(query)| query.next);
    LoginTemplate {
        // The page's own fresh id: its compression knows it varies (`web::compress`).
        submission: page.submission,
        ..LoginTemplate::new(
            page.layout,
            String::new(),
            safe_next(next.as_deref()),
            state.config.remember_me_days,
        )
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: Option<String>,
    password: Option<String>,
    remember: Option<String>,
    next: Option<String>,
    submission: Option<String>,
}

/// The one message for every failed login: it must not tell which part was wrong.
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

/// A login form sent again after its password was found wrong: not checked again.
const FORM_SPENT: &str = "This form was already sent with a wrong password, so it was not \
                          checked again. Please enter your password below.";

pub async fn log_in(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    page: Page,
    FormData(form): FormData<LoginForm>,
) -> Result<Response> {
    let next = safe_next(form.next.as_deref());
    let remember = form.remember.is_some();
    let typed_username = form.username.clone().unwrap_or_default();
    let remember_days = state.config.remember_me_days;
    let again = |status: StatusCode, error: &str, layout: Layout| {
        let username: String = typed_username.chars().take(64).collect();
        let mut page = LoginTemplate::new(layout, username, next.clone(), remember_days);
        page.remember = remember;
        page.error = Some(error.to_owned());
        (status, page).into_response()
    };

    let (Some(raw_username), Some(raw_password)) = (form.username.as_deref(), form.password) else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Please enter your username and password.",
            page.layout,
        ));
    };
    // Too long is refused before any hashing.
    if let Err(too_long) = Password::checkable(&raw_password) {
        return Ok(again(StatusCode::BAD_REQUEST, too_long, page.layout));
    }
    // A name that cannot exist is a failed login like any other; it is counted
    // against the client address only (it names no account).
    let username = Username::parse(raw_username).ok();
    let throttle_name = username.as_ref().map(Username::as_str);

    let submission =
        SubmissionId::parse_or_none(form.submission.as_deref()).map(SubmissionId::into_string);
    // Asked before the password is checked: simultaneous guesses cannot outrun the
    // throttle, and this form, retried, is one attempt (see throttle.rs).
    let attempt = match state
        .throttle
        .login_attempt(throttle_name, client, submission.as_deref())
        .await?
    {
        LoginVerdict::Go(attempt) => attempt,
        LoginVerdict::FormSpent => {
            return Ok(again(StatusCode::CONFLICT, FORM_SPENT, page.layout));
        }
        refused => {
            metrics::login(metrics::Login::Throttled);
            return Err(throttled(&refused));
        }
    };

    let found = match &username {
        Some(name) => users::find_by_username(&state.db, name).await?,
        None => None,
    };
    // The credential epoch is read before the hash that is checked: a password
    // change committed after this read raises the epoch after it, so a login with
    // the old password gets a session that is already stale.
    let epoch = state
        .index
        .epoch(found.as_ref().map_or(0, |u| u.id))
        .await?;
    let user = match found {
        Some(user) => users::find_by_id(&state.db, user.id).await?,
        None => None,
    };
    // Unknown users are checked against a dummy hash: the same work, the same time.
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let network = super::throttle::client_network(client);
    let verified =
        match password::verify_password(&state.hashing, raw_password, stored_hash, network).await {
            Ok(verified) => verified,
            Err(err) => {
                // Not checked: it counts as nothing, and the form may be sent again.
                let _ = state.throttle.finish(attempt, Outcome::NotChecked).await;
                return Err(err.into());
            }
        };
    let Some(user) = user.filter(|_| verified) else {
        // Counted before the visitor hears the verdict: if it cannot be, the
        // verdict is not told (the 503 page) and the attempt counts as nothing.
        state.throttle.finish(attempt, Outcome::Failed).await?;
        tracing::info!(username = throttle_name.unwrap_or("-"), %client, "failed login");
        metrics::login(metrics::Login::Wrong);
        return Ok(again(
            StatusCode::UNAUTHORIZED,
            WRONG_CREDENTIALS,
            page.layout,
        ));
    };

    // A success that cannot be recorded only leaves a lease that runs out.
    if let Err(err) = state.throttle.finish(attempt, Outcome::Succeeded).await {
        tracing::warn!(error = %err, "a successful login's attempt was not recorded");
    }
    // A replay of this very form (double click, retry after a lost response): the
    // session its first try created is replaced, not joined by a second one.
    let replayed = match &submission {
        Some(id) => {
            state
                .sessions
                .end_sessions_from_submission(user.id, id)
                .await?
        }
        None => false,
    };
    let facts = LoginFacts {
        remember,
        replica: state.replica.to_string(),
        epoch,
        client,
        agent: agent::describe(headers.get(USER_AGENT).and_then(|v| v.to_str().ok())),
        submission,
    };
    let (_, merged) =
        start_session(&state, &page.session, &user.id, &user.username, &facts).await?;
    let welcome = if replayed {
        Flash::info("You were already logged in by this form.")
    } else {
        Flash::success(welcome_back(&user.username, merged))
    };
    page.session.push_flash(welcome).await?;
    tracing::info!(user_id = user.id, remember, replayed, "logged in");
    metrics::login(metrics::Login::Ok);
    if replayed {
        metrics::replay_caught("login");
    }
    Ok(Redirect::to(&next).into_response())
}

/// What a login says: who you are now, and what became of the cart you had.
fn welcome_back(name: &str, merged: usize) -> String {
    match merged {
        0 => format!("Welcome back, {name}."),
        1 => format!("Welcome back, {name}. 1 item from this visit was added to your cart."),
        n => format!("Welcome back, {name}. {n} items from this visit were added to your cart."),
    }
}

/// The visitor's cart moved into the user's, and a new session id for the user.
/// Returns the user and how many units of the visitor's cart were added to theirs.
///
/// The merge comes first, while the old session still points at the anonymous
/// cart: a login retried after a failure in between finds the same cart again, and
/// the merge's two steps are idempotent, so nothing is lost or added twice. The
/// anonymous cart is retired in the same step that takes it, so an add still in
/// flight with the old cookie is refused rather than lost.
pub(super) async fn start_session(
    state: &AppState,
    session: &ShopSession,
    user_id: &i64,
    username: &str,
    facts: &LoginFacts,
) -> Result<(SessionUser, usize)> {
    let cart_id = session.anonymous_cart_id().await?;
    let merged = match &cart_id {
        Some(cart_id) => state
            .carts
            .merge(cart_id, *user_id)
            .await
            .map_err(|err| login_interrupted(err.into()))?,
        None => 0,
    };
    let claimed = SessionUser {
        id: *user_id,
        name: username.to_owned(),
        handle: String::new(),
    };
    // The anonymous cart id it returns was merged above, before the new id.
    let logged_in = session.log_in(&claimed, facts).await;
    let (user, _) = if cart_id.is_some() {
        logged_in.map_err(login_interrupted)?
    } else {
        logged_in?
    };
    Ok((user, merged))
}

/// Once the merge has begun, a failed login has changed something: the visitor's
/// cart was moved aside (its items join the account's at the next login, once).
/// "Nothing was changed" would be untrue, and "look at your cart" would show an
/// empty one; the page says to log in again. Other refusals keep their pages.
fn login_interrupted(err: AppError) -> AppError {
    match err {
        AppError::Unavailable(Dependency::SessionStore, cause)
        | AppError::OutcomeUnknown(_, cause) => AppError::OutcomeUnknown(LookAt::Login, cause),
        other => other,
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    submission: Option<String>,
}

/// Ends this session. The form's `submission` is the session's handle: a logout
/// replayed after this session ended (or from an older session's page) changes nothing.
pub async fn log_out(
    State(state): State<AppState>,
    session: ShopSession,
    form: std::result::Result<FormData<LogoutForm>, Response>,
) -> Result<Response> {
    // `curl -X POST /logout` sends no form at all: that is a logout without an id.
    let submission = form
        .ok()
        .and_then(|FormData(f)| SubmissionId::parse_or_none(f.submission.as_deref()))
        .map(SubmissionId::into_string);
    let user = session.user().await?;
    // Never "you were already logged out" to someone who is still logged in: a
    // logout form from an earlier login (an old tab) changes nothing and says so.
    let stale = match (&user, submission) {
        (None, _) => Some(Flash::info("You were already logged out.")),
        (Some(user), Some(handle)) if handle != user.handle => Some(Flash::info(format!(
            "That logout form was from an earlier login, so nothing was changed: you are \
             still logged in as {}. Use Log out above to log out.",
            user.name
        ))),
        (Some(_), _) => None,
    };
    if let Some(flash) = stale {
        session.push_flash(flash).await.ok();
        return Ok(Redirect::to("/").into_response());
    }
    if let Some(user) = user {
        tracing::info!(user_id = user.id, "logged out");
    }
    session.log_out().await?;
    // The session is gone, so the confirmation rides in a cookie of its own.
    Ok(Notice::LoggedOut.redirect("/", state.config.cookie_secure))
}
