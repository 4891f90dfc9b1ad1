//! Middleware: request spans, error pages, cross-origin
//! protection, and the session upkeep that runs after every page handler.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_http::trace::MakeSpan;
use tower_sessions::Session;

use crate::error::{
    default_message, AppError, ErrorMessage, LookAt, OutcomeUnknown, UNAVAILABLE_RETRY_AFTER,
};
use crate::session;
use crate::state::AppState;
use crate::web::compress::{self, Pieces};
use crate::web::notes::RequestNotes;
use crate::web::page::{Layout, Page};

/// Every request's log span carries the replica, the request id (nginx's
/// `X-Request-Id` when behind it, 32 fresh hex digits otherwise) and the W3C trace
/// id ([`crate::web::trace`]), so one click can be followed across the load
/// balancer and the replicas.
#[derive(Clone)]
pub struct RequestSpan {
    replica: Arc<str>,
}

impl RequestSpan {
    pub fn new(replica: Arc<str>) -> Self {
        RequestSpan { replica }
    }
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let trace = request.extensions().get::<crate::web::trace::TraceId>();
        tracing::info_span!(
            "request",
            replica = %self.replica,
            request_id = %request_id,
            trace_id = %trace.map_or("-", |t| t.as_str()),
            method = %request.method(),
            path = %request.uri().path(),
        )
    }
}

/// After a page handler: slide a reader's idle deadline now and then, end a new
/// visitor's trial when they come back (`session::trial`), and tell the session
/// layer which kind of cookie to send if it is about to save.
pub async fn session_upkeep(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let session = request.extensions().get::<Session>().cloned();
    let notes = request.extensions().get::<Arc<RequestNotes>>().cloned();
    let arrived_as = session.as_ref().and_then(Session::id);
    let mut response = next.run(request).await;
    // Pages show who is logged in: no shared cache, no back-button copy after logout.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let Some(session) = session else {
        return response;
    };
    // A failed request, or a page drawn without Redis, leaves the session alone
    // (with Redis down, asking again would only wait again).
    if response.status().is_server_error() || notes.is_some_and(|n| n.is_degraded()) {
        return response;
    }
    let upkeep = async {
        session::keep_alive(&session, &state.lifetimes).await?;
        session::trial::end_on_return(&session, arrived_as, &state.carts).await?;
        session::apply_cookie_expiry(&session, &state.lifetimes).await
    };
    if let Err(err) = upkeep.await {
        tracing::warn!(error = %err, "session upkeep failed");
    }
    response
}

/// Fetch Metadata based protection against cross-site request forgery, as Go 1.25's
/// `CrossOriginProtection`: a state-changing request passes when the browser says it
/// comes from this site (`Sec-Fetch-Site: same-origin`) or from the user
/// (`none`: typed address, bookmark). Without that header, `Origin` must match the
/// host. With neither, it is not a browser (curl, a script): no ambient cookies
/// to abuse, so it passes. No token needed, so anonymous browsing stays sessionless.
///
/// Checked first thing in [`site_answers`], so the refusal is a page like any other.
fn cross_origin_refusal(state: &AppState, request: &Request) -> Option<Response> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return None;
    }
    let headers = request.headers();
    let verdict = match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        Some(b"same-origin" | b"none") => Ok(()),
        Some(_) => Err("cross-site"),
        None => match headers.get(header::ORIGIN) {
            None => Ok(()),
            Some(origin) => {
                // Scheme and host: http://shop is not https://shop. The site's
                // scheme is the proxy's (X-Forwarded-Proto), else https with
                // COOKIE_SECURE, else http.
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                let scheme = headers
                    .get("x-forwarded-proto")
                    .and_then(|p| p.to_str().ok())
                    .and_then(|p| p.split(',').next())
                    .map(str::trim)
                    .unwrap_or(if state.config.cookie_secure {
                        "https"
                    } else {
                        "http"
                    });
                let expected = host.map(|host| format!("{scheme}://{host}"));
                if expected.is_some() && origin.to_str().ok() == expected.as_deref() {
                    Ok(())
                } else {
                    Err("origin mismatch")
                }
            }
        },
    };
    match verdict {
        Ok(()) => None,
        Err(reason) => {
            tracing::warn!(reason, "cross-origin request refused");
            Some(AppError::Forbidden(
                "This form was sent from another site, so it was refused. Please use the form on this site.".into(),
            )
            .into_response())
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorTemplate {
    layout: Layout,
    status: u16,
    title: String,
    message: String,
    /// The write may or may not have been applied: point at the cart, not at a retry.
    /// Where to see whether a write whose answer was lost was applied: path, words.
    look_at: Option<(&'static str, &'static str)>,
}

/// Every answer of the site for people (pages and static files; not the health
/// checks) passes here: a cross-site form is refused, the request is bounded in
/// time, an error becomes a page, and a page leaves compressed.
///
/// Turns every error response that is not already a page into one, in the site's
/// layout: `AppError`s (which carry their message), unknown paths, a body over the
/// limit, `REQUEST_TIMEOUT` (applied here), and the session layer's bare 500 when
/// saving a session failed (Redis down), which becomes a 503 like every other Redis
/// failure. If the request's write was already applied when the save failed or the
/// time ran out, the visitor goes where its success redirect would have sent them
/// (only the flash message is lost), because "please try again" would apply it twice.
///
/// The header keeps what the page extractor knew of the visitor (name, cart badge).
///
/// Every page leaves here gzipped when the browser accepts it, from the
/// compressed pieces other pages left behind ([`Pieces`]).
pub async fn site_answers(
    State((state, pieces)): State<(AppState, Pieces)>,
    mut request: Request,
    next: Next,
) -> Response {
    let notes = Arc::new(RequestNotes::default());
    request.extensions_mut().insert(notes.clone());
    let gzip = compress::wants_gzip(request.method(), request.headers());
    let response = error_page(&state, request, next, &notes).await;
    if !gzip {
        return response;
    }
    let varying = notes.varying();
    let varying: Vec<&str> = varying.iter().map(String::as_str).collect();
    pieces.gzip_page(response, &varying).await
}

/// The response, or the error page in its place ([`site_answers`]).
async fn error_page(
    state: &AppState,
    request: Request,
    next: Next,
    notes: &RequestNotes,
) -> Response {
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    // A refused cart form leads back to the cart, not only to the catalog.
    let from_cart = request.uri().path().starts_with("/cart/");
    // `REQUEST_TIMEOUT` is kept here, where its page is drawn: cut off wherever it
    // was, the request's write may yet land, so its page must not say otherwise.
    let limit = state.config.request_timeout;
    let (response, timed_out) = match cross_origin_refusal(state, &request) {
        Some(refusal) => (refusal, false),
        None => {
            // All of the request's Redis commands share one `REDIS_TIMEOUT` (redis::budget).
            let run = crate::redis::budget::scope(state.config.redis_timeout, next.run(request));
            match tokio::time::timeout(limit, run).await {
                Ok(response) => (response, false),
                Err(_) => (StatusCode::SERVICE_UNAVAILABLE.into_response(), true),
            }
        }
    };
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_html {
        let mut response = response;
        // The page showed the logout's notice: its cookie has done its job.
        if notes.notice_shown() {
            response.headers_mut().append(
                header::SET_COOKIE,
                crate::web::notice::removal(state.config.cookie_secure),
            );
        }
        return response;
    }
    let message = response
        .extensions()
        .get::<ErrorMessage>()
        .map(|m| m.0.clone());
    let session_save_failed = status == StatusCode::INTERNAL_SERVER_ERROR && message.is_none();
    // A write cut off by the timeout may yet land: its outcome is unknown.
    let cut_off_write = timed_out && writes;
    let message = match message {
        _ if cut_off_write => Some(TIMED_OUT_WRITE.to_owned()),
        _ if timed_out => Some(TIMED_OUT_PAGE.to_owned()),
        message => message,
    };
    // A write that was applied is the answer, whatever failed after it (emptying
    // the cart after an order, the flash, the session save, the time running out):
    // the visitor goes where its success leads, never to "nothing was changed".
    if let Some(location) = notes.applied() {
        tracing::warn!(
            %status,
            timed_out,
            session_save_failed,
            "write applied, then something failed; redirecting to its success page anyway"
        );
        return Redirect::to(&location).into_response();
    }
    let (parts, _) = response.into_parts();
    let status = if session_save_failed {
        tracing::warn!("session could not be saved; answering 503");
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    let page = ErrorTemplate {
        layout: notes
            .layout()
            .unwrap_or_else(|| Layout::bare(state.replica.clone())),
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: message.unwrap_or_else(|| default_message(status).to_owned()),
        look_at: match parts.extensions.get::<OutcomeUnknown>() {
            Some(OutcomeUnknown(look_at)) => Some(look_at.link()),
            None if cut_off_write => Some(LookAt::Cart.link()),
            None => None,
        }
        .filter(|_| status == StatusCode::SERVICE_UNAVAILABLE)
        .or_else(|| {
            (from_cart && status.is_client_error()).then_some(("/cart", "Back to your cart"))
        }),
    };
    let mut rendered = (status, page).into_response();
    // Keep Retry-After and the like; the body and its type are new.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    // Drawn with the visitor's header: never cached, even when the page layers'
    // own `no-store` never saw the response (a request cut off by the timeout).
    rendered
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        rendered
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER));
    }
    rendered
}

/// A page that took longer than `REQUEST_TIMEOUT`: nothing to doubt, just slow.
const TIMED_OUT_PAGE: &str =
    "This page took too long to prepare. Please try again in a few seconds.";

/// A form that took longer than `REQUEST_TIMEOUT`: never "nothing was changed".
const TIMED_OUT_WRITE: &str = "This took too long, and we could not confirm whether your change \
was saved. Please look at your cart or your orders before trying again.";

/// Unknown paths get the 404 page with the whole header, when the visitor can be known.
pub async fn not_found(page: Result<Page, AppError>) -> AppError {
    drop(page);
    AppError::NotFound
}
