//! Cart pages and forms. Every change is a POST that ends in a redirect
//! (post/redirect/get) — back to the page the form was on, or to `/cart` — with a
//! flash message saying what happened. Each form carries a one-time `submission`
//! id: a repeat (a retry, a double click, Back and resubmit) changes nothing.

use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{
    product_from_form, Added, CartOwner, EpochGuard, Guarded, Quantity, Updated, MAX_QUANTITY,
};
use crate::auth::safe_next;
use crate::auth::throttle::Verdict;
use crate::catalog::{Money, Product};
use crate::domain::SubmissionId;
use crate::error::{AppError, Result};
use crate::session::{ShopSession, SESSION_ENDED};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::web::client_ip::ClientIp;
use crate::web::form::FormData;
use crate::web::notes::WriteNotes;
use crate::web::notice::Notice;
use crate::web::page::{Layout, Page};

/// The routes of this feature, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cart", get(cart_page))
        .route("/cart/add", post(add_to_cart))
        .route("/cart/update", post(update_cart))
}

pub struct CartLine {
    pub product: Arc<Product>,
    pub quantity: u32,
    pub total: Money,
}

#[derive(Template, WebTemplate)]
#[template(path = "cart.html")]
pub struct CartTemplate {
    layout: Layout,
    lines: Vec<CartLine>,
    total: Money,
    max_quantity: u32,
    submission: String,
}

pub async fn cart_page(State(state): State<AppState>, page: Page) -> CartTemplate {
    // The page extractor already read the cart (for the header's badge).
    let lines: Vec<CartLine> = page
        .cart
        .into_iter()
        .filter_map(|(product_id, quantity)| {
            let product = state.catalog.get(product_id)?.clone();
            Some(CartLine {
                quantity,
                total: Money(product.price_cents * i64::from(quantity)),
                product,
            })
        })
        .collect();
    let total = Money(lines.iter().map(|line| line.total.0).sum());
    CartTemplate {
        layout: page.layout,
        lines,
        total,
        max_quantity: MAX_QUANTITY,
        submission: page.submission,
    }
}

#[derive(Debug, Deserialize)]
pub struct LineForm {
    product_id: Option<String>,
    quantity: Option<String>,
    /// The form's one-time id: a repeat of an applied one changes nothing.
    submission: Option<String>,
    /// The page the form was on, to go back to (adds from the catalog or a product page).
    back: Option<String>,
}

impl LineForm {
    fn submission(&self) -> Result<Option<SubmissionId>> {
        Ok(SubmissionId::parse(self.submission.as_deref())?)
    }
}

pub async fn add_to_cart(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    session: ShopSession,
    notes: WriteNotes,
    FormData(form): FormData<LineForm>,
) -> Result<Response> {
    // Check everything before touching anything: bad input changes nothing.
    let product = product_from_form(&state.catalog, form.product_id.as_deref())?;
    let quantity = Quantity::to_add(form.quantity.as_deref())?;
    let submission = form.submission()?;
    let submission = submission.as_ref().map(SubmissionId::as_str);
    let back = match form.back.as_deref() {
        Some(back) => safe_next(Some(back)),
        None => "/cart".to_owned(),
    };

    // A visitor without a session gets one, and a cart: state in Redis that
    // anyone can make, so it is rationed per client network. A shopper who has a
    // session (and so a cart, or a login) is never refused here; a cookie naming
    // no session (made up, or expired) is no session.
    let new_visitor = !session.exists().await?;
    if new_visitor {
        if let Verdict::Wait(wait) = state.throttle.anonymous_cart(client).await? {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            return Err(AppError::TooManyRequests {
                retry_after: wait,
                message: format!(
                    "Too many new carts were started from your network. Please try again in \
                     {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                ),
            });
        }
    }

    // A new visitor's session and cart are on trial until they come back
    // (`session::trial`): a client that never does leaves only short-lived state.
    let on_trial = new_visitor.then(|| state.carts.on_trial());
    let carts = on_trial.as_ref().unwrap_or(&state.carts);
    let change = |owner: CartOwner, guard: Option<EpochGuard>| async move {
        carts
            .add(
                &owner,
                product.id,
                quantity.get(),
                submission,
                guard.as_ref(),
            )
            .await
    };
    // With a replica to create one, there is always a cart (or the session-ended
    // refusal `cart_owner_or_new` gives); `None` would mean the same.
    let Some(added) = change_cart(&session, Some(&state.replica), change).await? else {
        return Err(AppError::Conflict(SESSION_ENDED.to_owned()));
    };
    let notice = match added {
        Added::Applied {
            quantity: now,
            capped: true,
        } => Notice::Capped {
            product: product.id,
            quantity: now,
        },
        Added::Applied { .. } => Notice::Added {
            product: product.id,
            quantity: quantity.get(),
        },
        Added::AlreadyApplied => Notice::AddResent {
            product: product.id,
        },
        Added::CartRetired => return Err(AppError::Conflict(CART_MOVED.to_owned())),
    };
    notes.applied(&back);
    match added {
        Added::AlreadyApplied => metrics::replay_caught("add"),
        _ => metrics::cart_write("add"),
    }
    // No session write: the answer's message rides in the notice cookie
    // (`web::notice`), and the add costs Redis only the cart's script.
    Ok(notice.redirect(&back, state.config.cookie_secure))
}

/// Runs a change on the visitor's cart; `Ok(None)` when there is none to change
/// (`create`: the replica that creates an anonymous cart for a visitor who has
/// none; without it, no cart is created).
///
/// A logged-in session on Redis is not checked against its user's credential
/// epoch first: the change's own script checks it, in the same hash slot as the
/// cart ([`EpochGuard`]), one round trip fewer and no moment between check and
/// write. If the script finds the session stale (a password change or "sign out
/// everywhere" since it began), the session is ended here and the change goes
/// where an anonymous visitor's would.
async fn change_cart<T, F, Fut>(
    session: &ShopSession,
    create: Option<&str>,
    change: F,
) -> Result<Option<T>>
where
    F: Fn(CartOwner, Option<EpochGuard>) -> Fut,
    Fut: Future<Output = std::result::Result<Guarded<T>, crate::redis::StoreError>>,
{
    if let Some((user, guard)) = session.user_unchecked().await? {
        match change(CartOwner::User(user.id), Some(guard)).await? {
            Guarded::Done(outcome) => {
                session.epoch_confirmed(user);
                return Ok(Some(outcome));
            }
            Guarded::Stale(current) => {
                session.settle(current).await?;
            }
        }
    }
    let owner = match create {
        Some(replica) => Some(session.cart_owner_or_new(replica).await?),
        None => session.cart_owner().await?,
    };
    let Some(owner) = owner else {
        return Ok(None);
    };
    // Checked the plain way now (`ShopSession::user`): no guard, never stale.
    match change(owner, None).await? {
        Guarded::Done(outcome) => Ok(Some(outcome)),
        Guarded::Stale(_) => Err(AppError::Conflict(
            "You were signed out while this was being sent, so nothing was changed. \
             Please try again."
                .to_owned(),
        )),
    }
}

/// What an add or update sent for an anonymous cart that a login has just taken over is told.
const CART_MOVED: &str = "This cart has been moved to your account by a login (in another tab, or \
one that was cut short), so nothing was changed. Log in to see it, then try again.";

pub async fn update_cart(
    State(state): State<AppState>,
    session: ShopSession,
    notes: WriteNotes,
    FormData(form): FormData<LineForm>,
) -> Result<Response> {
    let product = product_from_form(&state.catalog, form.product_id.as_deref())?;
    let quantity = Quantity::to_set(form.quantity.as_deref())?;
    let submission = form.submission()?;
    let submission = submission.as_ref().map(SubmissionId::as_str);

    let carts = &state.carts;
    let change = |owner: CartOwner, guard: Option<EpochGuard>| async move {
        carts
            .update(
                &owner,
                product.id,
                quantity.get(),
                submission,
                guard.as_ref(),
            )
            .await
    };
    // No cart at all: nothing to update, and no session to create for it.
    let Some(updated) = change_cart(&session, None, change).await? else {
        if session.ended().await? {
            return Err(AppError::Conflict(SESSION_ENDED.to_owned()));
        }
        return Ok(Redirect::to("/cart").into_response());
    };
    let id = product.id;
    let notice = match updated {
        Updated::Set => Notice::Set {
            product: id,
            quantity: quantity.get(),
        },
        Updated::Removed => Notice::Removed { product: id },
        Updated::NotInCart => Notice::NotInCart { product: id },
        Updated::AlreadyApplied => Notice::UpdateResent { product: id },
        Updated::CartRetired => return Err(AppError::Conflict(CART_MOVED.to_owned())),
    };
    notes.applied("/cart");
    match updated {
        Updated::AlreadyApplied => metrics::replay_caught("update"),
        Updated::NotInCart => {}
        _ => metrics::cart_write("update"),
    }
    // Like an add's, the message rides in the notice cookie: no session write.
    Ok(notice.redirect("/cart", state.config.cookie_secure))
}
