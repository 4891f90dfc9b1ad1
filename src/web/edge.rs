//! What every request and response goes through first and last, in one step: the
//! connection's busy/idle phase, the request id and trace id, and the headers on
//! every response (the request id, the replica's name, the security headers).
//!
//! One middleware rather than a layer each: every layer is a future wrapped around
//! the next, moved and polled on every request, and these only read or set a
//! header (docs/PERFORMANCE.md measures the difference).

use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::shutdown::Peer;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// The CSP allows only this site's own files: there is no inline script anywhere,
/// and no page may be framed (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
    style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'; object-src 'none'";

/// What the edge needs, made once: the replica's name as a header value, and
/// whether the site is served over HTTPS (HSTS).
#[derive(Clone)]
pub struct Edge {
    state: AppState,
    served_by: HeaderValue,
    hsts: bool,
}

impl Edge {
    pub fn new(state: AppState) -> Self {
        let served_by = HeaderValue::from_str(&state.replica)
            .unwrap_or_else(|_| HeaderValue::from_static("unnamed"));
        let hsts = state.config.cookie_secure;
        Edge {
            state,
            served_by,
            hsts,
        }
    }
}

/// The outermost middleware (after metrics).
///
/// - The connection is busy (no idle deadline) while a request is handled, and
///   while the replica drains before shutting down, every response closes its
///   connection (shutdown.rs).
/// - A request id: a trusted proxy's (nginx's `$request_id`), else 128 fresh random
///   bits; a client talking to a replica directly cannot choose what its requests
///   are logged under (`web::client_ip`). It is on the response too.
/// - The W3C trace id, for the log span and the session inspector (`web::trace`).
/// - The security headers, the replica's name, and HSTS when served over HTTPS
///   (`COOKIE_SECURE=true`): browsers must not fall back to plain HTTP for a year,
///   where the cookie could be planted or read.
pub async fn edge(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    let phase = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| peer.phase.clone());
    if let Some(phase) = &phase {
        phase.busy();
    }
    let trusted = {
        let peer = super::client_ip::peer_address(request.extensions());
        edge.state
            .config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(peer))
    };
    let request_id = match request.headers().get(REQUEST_ID) {
        Some(id) if trusted => id.clone(),
        _ => {
            let id = HeaderValue::from_str(&crate::token::random())
                .expect("random tokens are hex digits");
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let trace = super::trace::TraceId::of(request.headers());
    request.extensions_mut().insert(trace);

    let mut response = next.run(request).await;

    if let Some(phase) = &phase {
        phase.idle();
    }
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id);
    headers.insert(SERVED_BY, edge.served_by.clone());
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if edge.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if edge.state.draining.load(Ordering::Acquire) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
