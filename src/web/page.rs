//! What every page shows around its content: who is logged in, the cart badge, the
//! flash messages and the replica that served it. Gathered once per request by the
//! [`Page`] extractor, so handlers only deal with their own content.
//!
//! When Redis cannot be reached, pages that only read (the catalog, a product)
//! are still drawn, in a degraded, read-only mode: a banner says the cart and the
//! account are unavailable for now, and nothing about the visitor is shown.

use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{extract::FromRequestParts, http::request::Parts};

use crate::cart::{CartOwner, Lines};
use crate::error::{AppError, Dependency};
use crate::session::{Flash, SessionUser, ShopSession, SignedOut};
use crate::state::AppState;
use tower_sessions::SessionStore as _;

pub use super::layout::Layout;
use super::notes::RequestNotes;
use super::notice::Notice;

/// Extractor for page handlers: the session, the visitor's cart and the layout data.
///
/// Costs for a logged-in visitor: one `GET` of the session and one `HGETALL` of
/// the cart (the badge counts it; the cart page lists it). For an anonymous
/// visitor without a cookie: nothing at all.
pub struct Page {
    pub session: ShopSession,
    /// The cart's lines, in product id order; empty for a visitor with no cart.
    pub cart: Lines,
    pub layout: Layout,
    /// A fresh one-time id for the forms this page renders (`submission` field).
    pub submission: String,
}

/// A page only a known user can see: the [`Page`] and its user. A visitor who is
/// not logged in is sent to log in and then back ([`form_page`]); when Redis cannot
/// say who the visitor is (a degraded, read-only page), the answer is the 503 page
/// rather than a login form that a logged-in user could not use either.
pub struct LoggedIn {
    pub page: Page,
    pub user: SessionUser,
}

impl FromRequestParts<AppState> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let page = Page::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if page.layout.degraded {
            return Err(AppError::session_store_unavailable(anyhow::anyhow!(
                "the session store is unavailable: this page needs to know the user"
            ))
            .into_response());
        }
        match page.layout.user.clone() {
            Some(user) => Ok(LoggedIn { page, user }),
            None => {
                let next = form_page(parts.uri.path());
                Err(Redirect::to(&format!("/login?next={next}")).into_response())
            }
        }
    }
}

/// Where to come back after logging in: the page itself, or for a form, the page
/// that shows it. A form is sent to its page's own address, except these actions.
fn form_page(path: &str) -> &str {
    match path {
        "/account/delete" => "/account",
        "/account/sessions/revoke" | "/account/sessions/revoke-others" => "/account/sessions",
        path => path,
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = ShopSession::from_request_parts(parts, state).await?;
        let read_only = matches!(parts.method, Method::GET | Method::HEAD);
        let layout = match visitor(&session, state).await {
            Ok((layout, cart)) => Ok((layout, cart)),
            // A page that only reads is drawn without the visitor's details.
            Err(AppError::Unavailable(Dependency::SessionStore, cause)) if read_only => {
                tracing::warn!(error = %format!("{cause:#}"), "Redis unavailable: read-only page");
                Ok((Layout::degraded(state.replica.clone()), Lines::new()))
            }
            Err(err) => Err(err),
        };
        let (mut layout, cart) = layout?;
        let notes = RequestNotes::of(parts);
        if read_only {
            layout.log_in_next = log_in_next(&parts.uri);
            // A logout's or an add's confirmation, carried by its own cookie
            // (`web::notice`).
            if let Some(notice) = Notice::carried_by(&parts.headers) {
                if let Some(flash) = notice.flash(&state.catalog, parts.uri.path()) {
                    layout.flashes.insert(0, flash);
                }
                layout.title_note = notice.title().or(layout.title_note);
                if let Some(notes) = &notes {
                    *notes.notice_shown.lock().expect("notes lock") = true;
                }
            }
        }
        if !layout.degraded {
            tell_why_signed_out(&session, state, &mut layout, read_only).await?;
        }
        let submission = crate::token::random();
        if let Some(notes) = notes {
            let mut varying = notes.varying.lock().expect("notes lock");
            varying.push(submission.clone());
            if let Some(user) = &layout.user {
                varying.push(user.handle.clone());
            }
            drop(varying);
            *notes.layout.lock().expect("notes lock") = Some(layout.clone());
        }
        Ok(Page {
            session,
            cart,
            layout,
            submission,
        })
    }
}

/// A session that ended without this browser's doing is explained on the next
/// page, instead of looking like a lost cart: a page shows it at once, a form
/// keeps it for the page it leads to.
async fn tell_why_signed_out(
    session: &ShopSession,
    state: &AppState,
    layout: &mut Layout,
    read_only: bool,
) -> Result<(), AppError> {
    let Some(why) = session.signed_out().await? else {
        return Ok(());
    };
    let flash = match why {
        SignedOut::Elsewhere => Flash::info(
            "You were signed out on this browser from another device. Log in again to carry on.",
        ),
        SignedOut::TimedOut => Flash::info(format!(
            "You were signed out after {} without activity; your cart is saved. Log in to \
             see it again.",
            words_for(state.config.session_idle_timeout)
        )),
    }
    .with_link(&layout.log_in_href(), "Log in");
    if read_only {
        layout.flashes.insert(0, flash);
        layout.title_note = Some("Signed out");
    } else {
        session.push_flash(flash).await?;
    }
    Ok(())
}

/// A duration as people say it: "30 minutes", "1 hour", "45 seconds".
fn words_for(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    let (n, unit) = if secs > 0 && secs.is_multiple_of(86_400) {
        (secs / 86_400, "day")
    } else if secs > 0 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs > 0 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Where the header's "Log in" comes back to: this page, percent-encoded for the
/// `next` parameter; nothing for the home page and the login pages themselves.
fn log_in_next(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    if matches!(path, "/login" | "/register") || (path == "/" && uri.query().is_none()) {
        return String::new();
    }
    // A long search is not worth carrying through the login: its page will do.
    const LONGEST: usize = 300;
    let here = match uri.path_and_query() {
        Some(pq) if pq.as_str().len() <= LONGEST => pq.as_str(),
        _ => path,
    };
    if here.len() > LONGEST {
        return String::new();
    }
    super::format::query_value(here)
}

/// The visitor as the layout shows them, and their cart's lines.
async fn visitor(session: &ShopSession, state: &AppState) -> Result<(Layout, Lines), AppError> {
    // Reads the cart and checks the user's credential epoch in one command (account/).
    let cart = page_cart(state, session).await?;
    let user = session.user().await?;
    let cart_count = cart.iter().map(|(_, quantity)| quantity).sum();
    let flashes = session.take_flashes().await?;
    let layout = Layout {
        user,
        cart_count,
        flashes,
        replica: state.replica.clone(),
        show_account: true,
        degraded: false,
        title_note: None,
        log_in_next: String::new(),
    };
    Ok((layout, cart))
}

/// The cart lines a page shows, with the session's user checked on the way.
///
/// For a logged-in visitor the cart and the user's credential epoch are read in
/// one Redis command (one script on the user's hash slot), so checking the epoch
/// costs a page view nothing: one `GET` of the session and one command for the
/// cart. A stale session is ended here and the page is drawn anonymous.
///
/// And one round trip, not two, for a visitor this replica has served before: the
/// cart's key comes from the session, but the replica remembers whose session it
/// was ([`UserHints`]) and sends both commands at once. The guess is checked
/// against the session as read; a cart read for a session that turns out to be
/// gone or someone else's is discarded and read again. Each command touches one
/// key (one slot), so this works on Redis Cluster too.
async fn page_cart(state: &AppState, session: &ShopSession) -> Result<Lines, AppError> {
    let id = session.id();
    if let Some((id, guessed)) = id.and_then(|id| Some((id, state.user_hints.get(id)?))) {
        let owner = CartOwner::User(guessed);
        let epoch_key = crate::session::index::epoch_key(guessed);
        let (record, read) = tokio::join!(
            state.sessions.load(&id),
            state.carts.lines_and_counter(&owner, &epoch_key)
        );
        let record = record?;
        let claimed =
            crate::session::prefetch::with_prefetched(id, record, session.claimed_user_id())
                .await?;
        if claimed == Some(guessed) {
            let (lines, epoch) = read?;
            if session.settle(epoch).await?.is_some() {
                return Ok(lines);
            }
        }
        // Someone else's session now, or none: the read is discarded.
        state.user_hints.forget(id);
    }
    if let Some(user_id) = session.claimed_user_id().await? {
        let (lines, epoch) = state
            .carts
            .lines_and_counter(
                &CartOwner::User(user_id),
                &crate::session::index::epoch_key(user_id),
            )
            .await?;
        if session.settle(epoch).await?.is_some() {
            if let Some(id) = session.id() {
                state.user_hints.remember(id, user_id);
            }
            return Ok(lines);
        }
    }
    owner_cart(state, session).await
}

/// The cart of whoever the session says owns it (anonymous visitors).
async fn owner_cart(state: &AppState, session: &ShopSession) -> Result<Lines, AppError> {
    match session.cart_owner().await? {
        Some(owner) => state.carts.lines(&owner).await.map_err(AppError::from),
        None => Ok(Lines::new()),
    }
}
