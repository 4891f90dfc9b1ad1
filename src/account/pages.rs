//! The account pages' handlers. Every one needs a logged-in user (anonymous
//! visitors go to `/login?next=…`), and every POST checks all of its input
//! before it changes anything.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::auth::throttle::{LoginVerdict, Outcome};
use crate::auth::{password, throttled, users, Password};
use crate::cart::CartOwner;
use crate::domain::SubmissionId;
use crate::error::{AppError, Result};
use crate::session::store::LiveSession;
use crate::session::{Flash, SessionUser};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::token;
use crate::web::client_ip::ClientIp;
use crate::web::form::FormData;
use crate::web::format::When;
use crate::web::page::{Layout, LoggedIn};

/// The routes of this feature, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account_page))
        .route("/account/sessions", get(sessions_page))
        .route("/account/sessions/revoke", post(revoke))
        .route("/account/sessions/revoke-others", post(revoke_others))
        .route(
            "/account/password",
            get(password_page).post(change_password),
        )
        .route("/account/delete", post(delete_account))
}

// ------------------------------------------------------------------ /account

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountTemplate {
    layout: Layout,
    username: String,
    member_since: Option<When>,
    error: Option<String>,
}

async fn account_template(
    state: &AppState,
    layout: Layout,
    user: &SessionUser,
    error: Option<String>,
) -> Result<AccountTemplate> {
    let created = users::created_at(&state.db, user.id).await?;
    Ok(AccountTemplate {
        layout,
        username: user.name.clone(),
        member_since: created.map(When),
        error,
    })
}

pub async fn account_page(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
) -> Result<Response> {
    Ok(account_template(&state, page.layout, &user, None)
        .await?
        .into_response())
}

// ------------------------------------------------------------------ /account/sessions

pub struct SessionRow {
    handle: String,
    agent: String,
    client: String,
    signed_in: When,
    last_active: When,
    replica: String,
    remember: bool,
    current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "account_sessions.html")]
pub struct SessionsTemplate {
    layout: Layout,
    rows: Vec<SessionRow>,
    /// How fine "last active" is: the keep-alive interval, in minutes.
    granularity_minutes: u64,
}

pub async fn sessions_page(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
) -> Result<Response> {
    let current = page.session.id();
    let rows = state
        .sessions
        .live_sessions(user.id)
        .await?
        .into_iter()
        .map(|LiveSession { id, facts }| SessionRow {
            handle: facts.handle,
            agent: if facts.agent.is_empty() {
                "Unknown browser".to_owned()
            } else {
                facts.agent
            },
            client: if facts.client.is_empty() {
                "unknown".to_owned()
            } else {
                facts.client
            },
            signed_in: When(facts.login_at),
            last_active: When(facts.seen_at.max(facts.login_at)),
            replica: facts.replica,
            remember: facts.remember,
            current: Some(id) == current,
        })
        .collect();
    let granularity_minutes = state.lifetimes.keep_alive_interval().as_secs().div_ceil(60);
    Ok(SessionsTemplate {
        layout: page.layout,
        rows,
        granularity_minutes,
    }
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    session: Option<String>,
}

pub async fn revoke(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
    FormData(form): FormData<RevokeForm>,
) -> Result<Response> {
    let handle = form
        .session
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| AppError::bad_request("No session was chosen."))?;
    // Only this user's sessions are searched: a handle of anyone else's is unknown here.
    let Some(target) = state
        .sessions
        .live_sessions(user.id)
        .await?
        .into_iter()
        .find(|s| s.facts.handle == handle)
    else {
        return Err(AppError::Forbidden(
            "That session is not one of your active sessions (it may have ended already). Nothing was changed.".into(),
        ));
    };
    if Some(target.id) == page.session.id() {
        // Ending this very session is logging out.
        page.session.log_out().await?;
        return Ok(Redirect::to("/").into_response());
    }
    state.sessions.end_sessions(user.id, &[target.id]).await?;
    tracing::info!(user_id = user.id, "session revoked");
    metrics::sessions_revoked(1);
    page.session
        .push_flash(Flash::success(format!(
            "Signed out the session of {} ({}).",
            target.facts.agent, target.facts.client
        )))
        .await?;
    Ok(Redirect::to("/account/sessions").into_response())
}

pub async fn revoke_others(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
) -> Result<Response> {
    // Every other session ends, indexed or not; this one is carried over to the new epoch.
    let (epoch, ended) = state
        .sessions
        .end_sessions_of(user.id, page.session.id())
        .await?;
    page.session.carry_to_epoch(epoch).await?;
    tracing::info!(user_id = user.id, ended, "other sessions revoked");
    metrics::sessions_revoked(ended);
    let flash = match ended {
        0 => "There were no other sessions to sign out.".to_owned(),
        1 => "Signed out 1 other session.".to_owned(),
        n => format!("Signed out {n} other sessions."),
    };
    page.session.push_flash(Flash::success(flash)).await?;
    Ok(Redirect::to("/account/sessions").into_response())
}

// ------------------------------------------------------------------ re-authentication

/// Checks the current password of a logged-in user, throttled as a login.
/// `Ok(None)` when it is wrong (and the attempt counted).
async fn reauthenticate(
    state: &AppState,
    user: &SessionUser,
    client: std::net::IpAddr,
    password_given: String,
) -> Result<Option<users::User>> {
    let attempt = match state
        .throttle
        .login_attempt(Some(&user.name), client, None)
        .await?
    {
        LoginVerdict::Go(attempt) => attempt,
        refused => return Err(throttled(&refused)),
    };
    let row = users::find_by_id(&state.db, user.id).await?;
    let hash = row.as_ref().map(|u| u.password_hash.clone());
    let network = crate::auth::throttle::client_network(client);
    let verified =
        match password::verify_password(&state.hashing, password_given, hash, network).await {
            Ok(verified) => verified,
            Err(err) => {
                let _ = state.throttle.finish(attempt, Outcome::NotChecked).await;
                return Err(err.into());
            }
        };
    match row.filter(|_| verified) {
        Some(row) => {
            if let Err(err) = state.throttle.finish(attempt, Outcome::Succeeded).await {
                tracing::warn!(error = %err, "a re-authentication's attempt was not recorded");
            }
            Ok(Some(row))
        }
        None => {
            state.throttle.finish(attempt, Outcome::Failed).await?;
            tracing::info!(user_id = user.id, %client, "failed re-authentication");
            Ok(None)
        }
    }
}

// ------------------------------------------------------------------ /account/password

#[derive(Template, WebTemplate)]
#[template(path = "account_password.html")]
pub struct PasswordTemplate {
    layout: Layout,
    error: Option<String>,
    submission: String,
}

pub async fn password_page(LoggedIn { page, .. }: LoggedIn) -> Result<Response> {
    Ok(PasswordTemplate {
        layout: page.layout,
        error: None,
        submission: page.submission,
    }
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    current_password: Option<String>,
    new_password: Option<String>,
    new_password_confirm: Option<String>,
    submission: Option<String>,
}

pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    LoggedIn { page, user }: LoggedIn,
    FormData(form): FormData<PasswordForm>,
) -> Result<Response> {
    let submission =
        SubmissionId::parse_or_none(form.submission.as_deref()).map(SubmissionId::into_string);
    if let Some(id) = &submission {
        if page.session.applied_submission().await?.as_deref() == Some(id.as_str()) {
            page.session
                .push_flash(Flash::info("Your password was already changed."))
                .await?;
            return Ok(Redirect::to("/account").into_response());
        }
    }
    let form_id = submission.clone().unwrap_or_else(token::random);
    let again = |status: StatusCode, error: &str, layout: Layout| {
        (
            status,
            PasswordTemplate {
                layout,
                error: Some(error.to_owned()),
                submission: form_id.clone(),
            },
        )
            .into_response()
    };
    let current = form.current_password.filter(|p| !p.is_empty());
    let (Some(current), Some(new), Some(confirm)) =
        (current, form.new_password, form.new_password_confirm)
    else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Please fill in your current password and the new one twice.",
            page.layout,
        ));
    };
    if let Err(too_long) = Password::checkable(&current) {
        return Ok(again(StatusCode::BAD_REQUEST, too_long, page.layout));
    }
    let new = match Password::parse(new) {
        Ok(new) => new,
        Err(message) => return Ok(again(StatusCode::BAD_REQUEST, message, page.layout)),
    };
    let new = new.into_inner();
    if confirm != new {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "The two new passwords do not match.",
            page.layout,
        ));
    }
    if reauthenticate(&state, &user, client, current)
        .await?
        .is_none()
    {
        return Ok(again(
            StatusCode::UNAUTHORIZED,
            "Your current password is not right. Nothing was changed.",
            page.layout,
        ));
    }

    let hash = password::hash_password(&state.hashing, new)
        .await
        .map_err(AppError::Internal)?;
    if !users::set_password_hash(&state.db, user.id, &hash).await? {
        page.session.log_out().await?;
        return Ok(Redirect::to("/login").into_response());
    }
    // After the new hash is stored: every session created before this moment,
    // on any replica, indexed or not, is stale from here on.
    let (epoch, ended) = state
        .sessions
        .end_sessions_of(user.id, page.session.id())
        .await?;
    // This session: a new id, the new epoch.
    if let Some(old) = page.session.id() {
        state
            .index
            .index_remove(user.id, &[old.to_string()])
            .await?;
    }
    page.session.renew_after_credential_change(epoch).await?;
    if let Some(id) = &submission {
        page.session.record_submission(id).await?;
    }
    tracing::info!(user_id = user.id, ended, "password changed");
    page.session
        .push_flash(Flash::success(
            "Your password was changed. Every other session of your account was signed out.",
        ))
        .await?;
    Ok(Redirect::to("/account").into_response())
}

// ------------------------------------------------------------------ /account/delete

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    password: Option<String>,
}

pub async fn delete_account(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    LoggedIn { page, user }: LoggedIn,
    FormData(form): FormData<DeleteForm>,
) -> Result<Response> {
    let refuse = |status: StatusCode, error: &str, layout: Layout| {
        let state = state.clone();
        let user = user.clone();
        let error = error.to_owned();
        async move {
            Ok::<_, AppError>(
                (
                    status,
                    account_template(&state, layout, &user, Some(error)).await?,
                )
                    .into_response(),
            )
        }
    };
    let Some(given) = form.password.filter(|p| !p.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Please enter your password to delete your account.",
            page.layout,
        )
        .await;
    };
    if let Err(too_long) = Password::checkable(&given) {
        return refuse(StatusCode::BAD_REQUEST, too_long, page.layout).await;
    }
    if reauthenticate(&state, &user, client, given)
        .await?
        .is_none()
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "That password is not right. Your account was not deleted.",
            page.layout,
        )
        .await;
    }

    users::delete(&state.db, user.id).await?;
    // Every session of the account is stale from here on, indexed or not.
    state.sessions.end_sessions_of(user.id, None).await?;
    state.index.forget(user.id).await?;
    state.carts.delete_cart(&CartOwner::User(user.id)).await?;
    page.session.log_out().await?;
    tracing::info!(user_id = user.id, "account deleted");
    page.session
        .push_flash(Flash::success(
            "Your account, its cart and all its sessions were deleted.",
        ))
        .await?;
    Ok(Redirect::to("/").into_response())
}
