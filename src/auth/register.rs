//! Registration: the form, and the account it creates (logged in at once).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header::USER_AGENT, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::pages::{start_session, LoginTemplate, NextQuery};
use super::throttle::Verdict;
use super::{safe_next, users, Password, Username};
use crate::domain::SubmissionId;
use crate::error::{AppError, Result};
use crate::session::{Flash, LoginFacts};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::token;
use crate::web::agent;
use crate::web::client_ip::ClientIp;
use crate::web::{form::FormData, page::Layout, page::Page};

/// The registration routes, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new().route("/register", get(register_page).post(register))
}

#[derive(Template, WebTemplate)]
#[template(path = "register.html")]
pub struct RegisterTemplate {
    layout: Layout,
    username: String,
    error: Option<String>,
    submission: String,
    /// Where the new customer goes once the account exists (checkout, say).
    next: String,
}

pub async fn register_page(
    page: Page,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> RegisterTemplate {
    let next = query.ok().and_then(|Query(query)| query.next);
    RegisterTemplate {
        layout: page.layout,
        username: String::new(),
        error: None,
        submission: page.submission,
        next: safe_next(next.as_deref()),
    }
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    username: Option<String>,
    password: Option<String>,
    password_confirm: Option<String>,
    submission: Option<String>,
    next: Option<String>,
}

/// The login page for an account that exists, with a note instead of an error.
fn account_exists(
    state: &AppState,
    layout: Layout,
    username: &str,
    status: StatusCode,
    note: &str,
    next: &str,
) -> Response {
    let mut page = LoginTemplate::new(
        layout,
        username.to_owned(),
        next.to_owned(),
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
    let next = safe_next(form.next.as_deref());
    let refuse = |status: StatusCode, error: &str, layout: Layout| {
        (
            status,
            RegisterTemplate {
                layout,
                username: typed.clone(),
                error: Some(error.to_owned()),
                submission: form_id.clone(),
                next: next.clone(),
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
        &state.hashing,
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
                        &next,
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
            &next,
        ));
    }
    Ok(Redirect::to(&next).into_response())
}
