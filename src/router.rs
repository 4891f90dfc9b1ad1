//! The whole application as one router: the feature pages (behind the session
//! layer), static files, health checks, and the layers around every request.

use std::convert::Infallible;

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use axum::routing::get;
use axum::{middleware::from_fn, middleware::from_fn_with_state, Router};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::SessionManagerLayer;

use crate::session::{cookie_name, keep_cookies_forward, secure_cookie_removal, SessionStore};
use crate::state::AppState;
use crate::web;

/// Largest request body accepted: every form here is far smaller.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The whole application: pages (with sessions), static files, health checks.
///
/// Each group's middleware wraps the group once, as one service (`ServiceBuilder`
/// around a router), not each of its routes: `Router::layer` would box every
/// layer around every route, and every request would clone that whole chain of
/// boxes (40-odd allocations a page view, measured in docs/PERFORMANCE.md).
///
/// Returned as one boxed service (not wrapped in one more `Router`, which
/// would match every request's path once more only to reach its fallback).
pub fn build(state: AppState, sessions: SessionStore) -> App {
    let session_layer = SessionManagerLayer::new(sessions.clone())
        .with_name(cookie_name(state.config.cookie_secure))
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_secure(state.config.cookie_secure);

    // Only pages go through the session layer: static files and health checks
    // never look up a session.
    let page_routes = Router::new()
        .merge(crate::catalog::pages::router())
        .merge(crate::cart::pages::router())
        .merge(crate::auth::pages::router())
        .merge(crate::auth::register::router())
        .merge(crate::account::pages::router())
        .merge(crate::orders::pages::router())
        .route("/session", get(web::inspector::session_page))
        .fallback(web::middleware::not_found)
        .with_state(state.clone());
    let metrics = state.config.metrics_addr.is_some();
    // With metrics on, each route notes its template for the request's metrics.
    let page_routes = if metrics {
        page_routes.route_layer(web::metrics::NoteRoute)
    } else {
        page_routes
    };
    let pages = ServiceBuilder::new()
        // Pages show who is logged in: no shared cache, no back-button copy after logout.
        // (`no-store` on every page: `session_upkeep`.)
        // Only over HTTPS (a `__Host-` cookie): plain HTTP skips the extra layer.
        .option_layer(
            state
                .config
                .cookie_secure
                .then(|| from_fn(secure_cookie_removal)),
        )
        // Outside the session layer: it sees the cookie the layer adds.
        .layer(from_fn_with_state(sessions.clone(), keep_cookies_forward))
        .layer(session_layer)
        .layer(from_fn_with_state(
            state.clone(),
            web::middleware::session_upkeep,
        ))
        .service(page_routes);

    // From memory, compressed once at start (`assets::serve`).
    let static_files = Router::new().fallback(crate::assets::serve);

    // For people (pages and static files, one cache of compressed pieces between
    // them): every error becomes a page in the site's layout, requests are
    // bounded in time and size, cross-site forms are refused, and every page is
    // gzipped from cached pieces (static files come compressed already).
    let for_people = ServiceBuilder::new()
        .layer(from_fn_with_state(
            (state.clone(), web::compress::Pieces::default()),
            web::middleware::site_answers,
        ))
        // One limit, tower-http's: it refuses a too-long Content-Length at once and
        // bounds a chunked body as it is read. axum's own limit is turned off, or
        // every form's body would be wrapped and counted a second time.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // Back to axum's body type for the layers inside (a router did it before).
        .map_request(with_axum_body::<tower_http::body::Limited<axum::body::Body>>);

    // For machines (load balancer, compose): plain-text health checks. Static
    // files and pages are routed here too, each through the layers for people
    // (one router for the three, not a router in a router: each would match the
    // path again). The layers below wrap all: request ids, the request log line,
    // the replica's name and the security headers are on every response.
    let everything = Router::new()
        .route("/healthz", get(web::health::healthz))
        .route("/readyz", get(web::health::readyz));
    // Only the health checks are routes of their own to note (pages note theirs).
    let everything = if metrics {
        everything.route_layer(web::metrics::NoteRoute)
    } else {
        everything
    };
    let everything = everything
        .nest_service("/static", for_people.clone().service(static_files))
        .fallback_service(for_people.service(pages))
        .with_state(state.clone());
    // Request logging costs nothing when the log level drops it: with `RUST_LOG`
    // above info, no span or log line per request is made, so no layer either.
    let log_requests = tracing::level_filters::LevelFilter::current() >= tracing::Level::INFO;
    let outer = ServiceBuilder::new()
        // Listed outermost first.
        .option_layer(metrics.then(|| from_fn(web::metrics::record_request)))
        // The connection's phase, request and trace ids, and every response's
        // headers, in one middleware (`web::edge`).
        .layer(from_fn_with_state(
            web::edge::Edge::new(state.clone()),
            web::edge::edge,
        ))
        .option_layer(log_requests.then(|| {
            ServiceBuilder::new()
                .map_response(axum::response::IntoResponse::into_response)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(web::middleware::RequestSpan::new(state.replica.clone()))
                        // One line per request, in the span with the replica and request id.
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
        }))
        .service(everything);
    App::new(outer)
}

/// A request whose body is `B`, with the body boxed as axum's own.
fn with_axum_body<B>(request: axum::http::Request<B>) -> Request
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    request.map(axum::body::Body::new)
}

/// The whole application, as `axum::serve` takes it.
pub type App = BoxCloneSyncService<Request, Response, Infallible>;
