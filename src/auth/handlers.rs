//! Login, logout and registration pages.
//!
//! The session steps, in order, are the heart of this project:
//! - login: check the password → `cycle_id()` (a new session id) → store the user →
//!   merge the anonymous cart into the user's cart → redirect;
//! - logout: `flush()` deletes the session in Redis and the cookie in the browser;
//!   the user's cart stays in `cart:{u<id>}` for the next login, on any device.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{password, safe_next, users, Password, Username};
use crate::error::{AppError, Result};
use crate::session::{SessionUser, ShopSession};
use crate::state::AppState;
use crate::web::client_ip::ClientIp;
use crate::web::{form::FormData, page::Chrome, page::Page};

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginTemplate {
    chrome: Chrome,
    username: String,
    next: String,
    remember: bool,
    /// "Remember me for N days": REMEMBER_ME_DAYS.
    remember_days: u32,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    page: Page,
    Query(query): Query<NextQuery>,
) -> LoginTemplate {
    LoginTemplate {
        chrome: page.chrome,
        username: String::new(),
        next: safe_next(query.next.as_deref()),
        remember: false,
        remember_days: state.config.remember_me_days,
        error: None,
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: Option<String>,
    password: Option<String>,
    remember: Option<String>,
    next: Option<String>,
}

/// The one message for every failed login: it must not tell which part was wrong.
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

pub async fn log_in(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    page: Page,
    FormData(form): FormData<LoginForm>,
) -> Result<Response> {
    let next = safe_next(form.next.as_deref());
    let remember = form.remember.is_some();
    let typed_username = form.username.clone().unwrap_or_default();
    let again = |status: StatusCode, error: &str, chrome: Chrome| {
        let username: String = typed_username.chars().take(64).collect();
        let page = LoginTemplate {
            chrome,
            username,
            next: next.clone(),
            remember,
            remember_days: state.config.remember_me_days,
            error: Some(error.to_owned()),
        };
        (status, page).into_response()
    };

    let (Some(raw_username), Some(raw_password)) = (form.username.as_deref(), form.password) else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Please enter your username and password.",
            page.chrome,
        ));
    };
    // Too long is refused before any hashing.
    if raw_password.len() > Password::MAX_BYTES {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Passwords are at most 128 bytes long.",
            page.chrome,
        ));
    }
    // A name that cannot exist is a failed login like any other; it is counted
    // against the client address only (it names no account).
    let username = Username::parse(raw_username).ok();
    let throttle_name = username.as_ref().map(Username::as_str);

    if let Some(wait) = state
        .throttle
        .blocked_for(throttle_name, client)
        .await
        .map_err(AppError::Unavailable)?
    {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return Err(AppError::TooManyRequests {
            retry_after: wait,
            message: format!(
                "Too many failed logins. Please try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            ),
        });
    }

    let user = match &username {
        Some(name) => users::find_by_username(&state.db, name).await?,
        None => None,
    };
    // Unknown users are checked against a dummy hash: the same work, the same time.
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = password::verify_password(raw_password, stored_hash)
        .await
        .map_err(AppError::Internal)?;
    let Some(user) = user.filter(|_| verified) else {
        state
            .throttle
            .record_failure(throttle_name, client)
            .await
            .map_err(AppError::Unavailable)?;
        tracing::info!(username = throttle_name.unwrap_or("-"), %client, "failed login");
        return Ok(again(
            StatusCode::UNAUTHORIZED,
            WRONG_CREDENTIALS,
            page.chrome,
        ));
    };

    state
        .throttle
        .clear_user(&user.username)
        .await
        .map_err(AppError::Unavailable)?;
    let session_user = SessionUser {
        id: user.id,
        name: user.username.clone(),
    };
    start_session(&state, &page.session, &session_user, remember).await?;
    tracing::info!(user_id = user.id, remember, "logged in");
    Ok(Redirect::to(&next).into_response())
}

/// The visitor's cart moved into the user's, and a new session id for the user.
///
/// The merge comes first, while the old session still points at the anonymous
/// cart: a login retried after a failure in between finds the same cart again, and
/// the merge's two steps are idempotent, so nothing is lost or added twice. The
/// anonymous cart is retired in the same step that takes it, so an add still in
/// flight with the old cookie is refused rather than lost.
async fn start_session(
    state: &AppState,
    session: &ShopSession,
    user: &SessionUser,
    remember: bool,
) -> Result<()> {
    if let Some(cart_id) = session.anonymous_cart_id().await? {
        state.carts.merge(&cart_id, user.id).await?;
    }
    session.log_in(user, remember, &state.replica).await?;
    Ok(())
}

pub async fn log_out(session: ShopSession) -> Result<Redirect> {
    if let Some(user) = session.user().await? {
        tracing::info!(user_id = user.id, "logged out");
    }
    session.log_out().await?;
    Ok(Redirect::to("/"))
}

#[derive(Template, WebTemplate)]
#[template(path = "register.html")]
pub struct RegisterTemplate {
    chrome: Chrome,
    username: String,
    error: Option<String>,
}

pub async fn register_page(page: Page) -> RegisterTemplate {
    RegisterTemplate {
        chrome: page.chrome,
        username: String::new(),
        error: None,
    }
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    username: Option<String>,
    password: Option<String>,
    password_confirm: Option<String>,
}

pub async fn register(
    State(state): State<AppState>,
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
    let refuse = |status: StatusCode, error: &str, chrome: Chrome| {
        (
            status,
            RegisterTemplate {
                chrome,
                username: typed.clone(),
                error: Some(error.to_owned()),
            },
        )
            .into_response()
    };

    let username = match Username::parse(form.username.as_deref().unwrap_or_default()) {
        Ok(username) => username,
        Err(message) => return Ok(refuse(StatusCode::BAD_REQUEST, message, page.chrome)),
    };
    let password = match Password::parse(form.password.unwrap_or_default()) {
        Ok(password) => password,
        Err(message) => return Ok(refuse(StatusCode::BAD_REQUEST, message, page.chrome)),
    };
    if form.password_confirm.as_deref() != Some(password.0.as_str()) {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.",
            page.chrome,
        ));
    }

    let user = match users::create(&state.db, &username, password.into_inner()).await {
        Ok(user) => user,
        Err(users::CreateUserError::UsernameTaken) => {
            return Ok(refuse(
                StatusCode::CONFLICT,
                "That username is taken. Please choose another.",
                page.chrome,
            ));
        }
        Err(users::CreateUserError::Database(e)) => return Err(e.into()),
        Err(users::CreateUserError::Hashing(e)) => return Err(AppError::Internal(e)),
    };
    tracing::info!(user_id = user.id, "registered");
    let session_user = SessionUser {
        id: user.id,
        name: user.username,
    };
    start_session(&state, &page.session, &session_user, false).await?;
    page.session
        .push_flash(crate::session::Flash::success(format!(
            "Welcome, {}! Your account is ready.",
            session_user.name
        )))
        .await?;
    Ok(Redirect::to("/").into_response())
}
