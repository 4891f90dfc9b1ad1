//! `GET /session`: what the server keeps for this browser. The page the
//! Flask-Session tutorials use to prove the session lives on the server: the
//! cookie holds only an id; everything else is in Redis under that id.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::Extension;
use fred::prelude::KeysInterface;
use time::OffsetDateTime;

use crate::cart::CartOwner;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::client_ip::FromThisHost;
use crate::web::page::{Layout, Page};
use crate::web::trace::TraceId;

#[derive(Template, WebTemplate)]
#[template(path = "session.html")]
pub struct SessionTemplate {
    layout: Layout,
    backend: &'static str,
    /// Kept in Redis, shared by every replica (not this process's memory).
    shared: bool,
    /// This request's W3C trace id, as logged by nginx and this replica.
    trace_id: String,
    /// `None`: this browser has no session on the server.
    rows: Option<Vec<(&'static str, String)>>,
}

fn shorten(id: &str) -> String {
    format!("{}…", id.chars().take(8).collect::<String>())
}

pub async fn session_page(
    State(state): State<AppState>,
    FromThisHost(from_this_host): FromThisHost,
    trace: Option<Extension<TraceId>>,
    page: Page,
) -> Result<SessionTemplate> {
    let trace_id = trace.map_or_else(|| "—".to_owned(), |Extension(t)| t.to_string());
    let shared = state.redis.is_some();
    let backend = if state.redis.is_some() {
        "Redis"
    } else {
        "in-memory (dev mode)"
    };
    let session = &page.session;
    let user = page.layout.user.clone();
    // Degraded (Redis unreachable): the banner says so; the session cannot be read.
    let id = session.id().filter(|_| !page.layout.degraded);
    let Some(id) = id else {
        return Ok(SessionTemplate {
            layout: page.layout,
            backend,
            shared,
            trace_id,
            rows: None,
        });
    };
    let id = id.to_string();

    let mut rows: Vec<(&'static str, String)> = vec![
        ("Served now by", state.replica.to_string()),
        ("Trace id of this request", trace_id.clone()),
        (
            "Created by",
            session.created_by().await?.unwrap_or_else(|| "—".into()),
        ),
        ("Session id (cookie sid)", shorten(&id)),
        ("Stored in", format!("{backend}, key {}", shorten(&id))),
    ];
    // Which Redis node holds it: infrastructure, shown as `/readyz`'s detail is
    // (on this host, or with HEALTH_DETAIL), never to the internet.
    if let (Some(redis), true) = (&state.redis, from_this_host || state.config.health_detail) {
        let mode = crate::web::health::redis_mode(&state);
        rows.push(("Redis node", crate::redis::topology::describe(redis, mode)));
    }
    if let Some(redis) = &state.redis {
        let ttl: i64 = redis
            .ttl(id.as_str())
            .await
            .map_err(AppError::session_store_unavailable)?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        rows.push(("Redis key TTL", format!("{ttl} s")));
        rows.push((
            "Expires at",
            if ttl >= 0 {
                super::format::moment_to_the_second(now + ttl)
            } else {
                "—".into()
            },
        ));
    }
    match &user {
        Some(user) => {
            let remember = session.remember().await?;
            rows.push(("User", format!("{} (id {})", user.name, user.id)));
            rows.push((
                "Remember me",
                if remember {
                    "on: persistent cookie".into()
                } else {
                    "off: cookie ends with the browser".into()
                },
            ));
            if let Some(at) = session.login_at().await? {
                rows.push(("Logged in at", super::format::moment_to_the_second(at)));
            }
            if let Some(seen) = session.seen_at().await? {
                rows.push((
                    "Idle deadline last slid at",
                    super::format::moment_to_the_second(seen),
                ));
            }
        }
        None => {
            rows.push(("User", "anonymous".into()));
        }
    }
    if let Some(owner) = &page.session.cart_owner().await? {
        let key = match owner {
            CartOwner::User(_) => owner.redis_key(),
            CartOwner::Anonymous(id) => format!("cart:{{a{}}}", shorten(id)),
        };
        let kind = if state.redis.is_some() {
            "a Redis hash"
        } else {
            "in memory"
        };
        rows.push((
            "Cart (kept apart from the session)",
            format!("{key}, {kind}"),
        ));
    }
    Ok(SessionTemplate {
        layout: page.layout,
        backend,
        shared,
        trace_id,
        rows: Some(rows),
    })
}
