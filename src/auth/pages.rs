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

use super::throttle::Verdict;
use super::{password, safe_next, too_many_logins, users, Password, Username};
use crate::domain::SubmissionId;
use crate::error::{AppError, Result};
use crate::session::{Flash, LoginFacts, SessionUser, ShopSession};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::token;
use crate::web::agent;
use crate::web::client_ip::ClientIp;
use crate::web::{form::FormData, page::Layout, page::Page};

/// The routes of this feature, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(log_in))
        .route("/logout", post(log_out))
        .route("/register", get(register_page).post(register))
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
    notice: Option<String>,
    submission: String,
}

impl LoginTemplate {
    fn new(layout: Layout, username: String, next: String, remember_days: u32) -> Self {
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
    next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    page: Page,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> LoginTemplate {
    // A query it cannot read (`next` twice, bad encoding) is no reason to refuse
    // the login form: it goes back to the home page instead.
    let next = query.ok().and_then(|Query(query)| query.next);
    LoginTemplate::new(
        page.layout,
        String::new(),
        safe_next(next.as_deref()),
        state.config.remember_me_days,
    )
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

    // Counted before the password is checked: simultaneous guesses cannot outrun it.
    if let Verdict::Wait(wait) = state.throttle.login_attempt(throttle_name, client).await? {
        metrics::login(metrics::Login::Throttled);
        return Err(too_many_logins(wait));
    }

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
    let verified = password::verify_password(raw_password, stored_hash)
        .await
        .map_err(AppError::Internal)?;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!(username = throttle_name.unwrap_or("-"), %client, "failed login");
        metrics::login(metrics::Login::Wrong);
        return Ok(again(
            StatusCode::UNAUTHORIZED,
            WRONG_CREDENTIALS,
            page.layout,
        ));
    };

    state.throttle.succeeded(&user.username, client).await?;
    let submission =
        SubmissionId::parse_or_none(form.submission.as_deref()).map(SubmissionId::into_string);
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
async fn start_session(
    state: &AppState,
    session: &ShopSession,
    user_id: &i64,
    username: &str,
    facts: &LoginFacts,
) -> Result<(SessionUser, usize)> {
    let merged = match session.anonymous_cart_id().await? {
        Some(cart_id) => state.carts.merge(&cart_id, *user_id).await?,
        None => 0,
    };
    let claimed = SessionUser {
        id: *user_id,
        name: username.to_owned(),
        handle: String::new(),
    };
    // The anonymous cart id it returns was merged above, before the new id.
    let (user, _) = session.log_in(&claimed, facts).await?;
    Ok((user, merged))
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    submission: Option<String>,
}

/// Ends this session. The form's `submission` is the session's handle: a logout
/// replayed after this session ended (or from an older session's page) changes nothing.
pub async fn log_out(
    session: ShopSession,
    form: std::result::Result<FormData<LogoutForm>, Response>,
) -> Result<Redirect> {
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
        return Ok(Redirect::to("/"));
    }
    if let Some(user) = user {
        tracing::info!(user_id = user.id, "logged out");
    }
    session.log_out().await?;
    Ok(Redirect::to("/"))
}

#[derive(Template, WebTemplate)]
#[template(path = "register.html")]
pub struct RegisterTemplate {
    layout: Layout,
    username: String,
    error: Option<String>,
    submission: String,
}

pub async fn register_page(page: Page) -> RegisterTemplate {
    RegisterTemplate {
        layout: page.layout,
        username: String::new(),
        error: None,
        submission: token::random(),
    }
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    username: Option<String>,
    password: Option<String>,
    password_confirm: Option<String>,
    submission: Option<String>,
}

/// The login page for an account that exists, with a note instead of an error.
fn account_exists(
    state: &AppState,
    layout: Layout,
    username: &str,
    status: StatusCode,
    note: &str,
) -> Response {
    let mut page = LoginTemplate::new(
        layout,
        username.to_owned(),
        "/".to_owned(),
        state.config.remember_me_days,
    );
    page.notice = Some(note.to_owned());
    (status, page).into_response()
}

pub async fn register(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    page: Page,
    FormData(form): FormData<RegisterForm>,
) -> Result<Response> {
    let typed: String = form
        .username
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect();
    let submission =
        SubmissionId::parse_or_none(form.submission.as_deref()).map(SubmissionId::into_string);
    // A retried form keeps its id, so the page it shows again keeps it too.
    let form_id = submission.clone().unwrap_or_else(token::random);
    let refuse = |status: StatusCode, error: &str, layout: Layout| {
        (
            status,
            RegisterTemplate {
                layout,
                username: typed.clone(),
                error: Some(error.to_owned()),
                submission: form_id.clone(),
            },
        )
            .into_response()
    };

    let username = match Username::parse(form.username.as_deref().unwrap_or_default()) {
        Ok(username) => username,
        Err(message) => return Ok(refuse(StatusCode::BAD_REQUEST, message, page.layout)),
    };
    let password = match Password::parse(form.password.unwrap_or_default()) {
        Ok(password) => password,
        Err(message) => return Ok(refuse(StatusCode::BAD_REQUEST, message, page.layout)),
    };
    if form.password_confirm.as_deref() != Some(password.0.as_str()) {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.",
            page.layout,
        ));
    }

    // Counted per address before the name is looked at: "that username is taken"
    // tells whether an account exists, so answering it is rationed (SECURITY.md).
    if let Verdict::Wait(wait) = state.throttle.register_attempt(client).await? {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return Err(AppError::TooManyRequests {
            retry_after: wait,
            message: format!(
                "Too many registrations from your address. Please try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            ),
        });
    }

    let user = match users::create(
        &state.db,
        &username,
        password.into_inner(),
        submission.as_deref(),
    )
    .await
    {
        Ok(user) => user,
        Err(users::CreateUserError::UsernameTaken) => {
            // Taken by this very form's first try (its response was lost)?
            if let Some(id) = &submission {
                if let Some(name) = users::created_by_submission(&state.db, id).await? {
                    tracing::info!(username = %name, "registration replayed");
                    metrics::replay_caught("register");
                    return Ok(account_exists(
                        &state,
                        page.layout,
                        &name,
                        StatusCode::OK,
                        "Your account exists: it was created when you first sent this form. Please log in.",
                    ));
                }
            }
            return Ok(refuse(
                StatusCode::CONFLICT,
                "That username is taken. Please choose another.",
                page.layout,
            ));
        }
        Err(users::CreateUserError::Database(e)) => return Err(e.into()),
        Err(users::CreateUserError::Hashing(e)) => return Err(AppError::Internal(e)),
    };
    tracing::info!(user_id = user.id, "registered");
    metrics::registered();

    // The account exists from here on. If the session cannot be saved now (Redis
    // down), the visitor is told so and sent to log in, never "try again" (which
    // would answer "taken"): all-or-nothing as far as they can see.
    let session_result = async {
        // A new account starts a new credential epoch, and its session carries it:
        // a session made for an earlier holder of this user id (an account deleted,
        // a database restored from a backup) carries an older epoch and is ended
        // where the user is read. The session is bound to this account, not only
        // to its number.
        let epoch = state.index.bump_epoch(user.id).await?;
        let facts = LoginFacts {
            remember: false,
            replica: state.replica.to_string(),
            epoch,
            client,
            agent: agent::describe(headers.get(USER_AGENT).and_then(|v| v.to_str().ok())),
            submission: None,
        };
        start_session(&state, &page.session, &user.id, &user.username, &facts).await?;
        page.session
            .push_flash(Flash::success(format!(
                "Welcome, {}! Your account is ready.",
                user.username
            )))
            .await?;
        // Saved here, not after the handler, so that a failure is this page's to explain.
        page.session.save().await?;
        Ok::<_, AppError>(())
    }
    .await;
    if let Err(err) = session_result {
        tracing::warn!(user_id = user.id, error = %err, "account created, session not saved");
        // A 5xx: the session layer leaves the unsaved session alone.
        return Ok(account_exists(
            &state,
            Layout::bare(state.replica.clone()),
            &user.username,
            StatusCode::SERVICE_UNAVAILABLE,
            "Your account was created, but you could not be logged in just now. Please log in.",
        ));
    }
    Ok(Redirect::to("/").into_response())
}
