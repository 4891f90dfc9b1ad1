//! Router assembly and the middleware around every request.

pub mod client_ip;
pub mod form;
mod health;
mod inspector;
pub mod middleware;
pub mod page;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::routing::get;
use axum::{middleware::from_fn, middleware::from_fn_with_state, Router};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::SessionManagerLayer;

use crate::session::{cookie_name, secure_cookie_removal, SessionStoreWrapper};
use crate::state::AppState;

/// Largest request body accepted: every form here is far smaller.
pub const BODY_LIMIT: usize = 16 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// The whole application: pages (with sessions), static files, health checks.
pub fn router(state: AppState, sessions: SessionStoreWrapper) -> Router {
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name(cookie_name(state.config.cookie_secure))
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_secure(state.config.cookie_secure);

    // Only pages go through the session layer: static files and health checks
    // never look up a session.
    let pages = Router::new()
        .merge(crate::catalog::router())
        .merge(crate::cart::router())
        .merge(crate::auth::router())
        .merge(crate::account::router())
        .route("/session", get(inspector::session_page))
        .fallback(middleware::not_found)
        .layer(from_fn_with_state(
            state.clone(),
            middleware::session_upkeep,
        ))
        .layer(session_layer)
        .layer(from_fn(secure_cookie_removal))
        // Pages show who is logged in: no shared cache, no back-button copy after logout.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    let static_files = Router::new()
        .nest_service("/static", ServeDir::new(static_dir()))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=604800"),
        ));

    let replica = HeaderValue::from_str(&state.replica)
        .unwrap_or_else(|_| HeaderValue::from_static("unnamed"));
    let request_timeout = state.config.request_timeout;

    // For people: every error becomes a page in the site's layout, requests are
    // bounded in time and size, and cross-site forms are refused.
    let site = Router::new().merge(pages).merge(static_files).layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(state.clone(), middleware::html_errors))
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                request_timeout,
            ))
            .layer(from_fn(middleware::cross_origin_protection))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(RequestBodyLimitLayer::new(BODY_LIMIT)),
    );

    // For machines (load balancer, compose): plain-text health checks. The layers
    // below wrap both: request ids, the request log line, the replica's name and
    // the security headers are on every response.
    Router::new()
        .merge(site)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(
            // Listed outermost first.
            ServiceBuilder::new()
                .layer(from_fn_with_state(
                    state.clone(),
                    middleware::connection_upkeep,
                ))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(middleware::RequestSpan::new(state.replica.clone()))
                        // One line per request, in the span with the replica and request id.
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(SetResponseHeaderLayer::overriding(SERVED_BY, replica))
                .layer(from_fn(middleware::security_headers)),
        )
        .with_state(state)
}

/// `static/` next to the working directory (the container's WORKDIR), or the
/// source tree's when run from elsewhere with `cargo run`.
fn static_dir() -> std::path::PathBuf {
    let local = std::path::PathBuf::from("static");
    if local.is_dir() {
        local
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
    }
}
