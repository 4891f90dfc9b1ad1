//! The checkout page and form, the orders list and the order page. All of them
//! need a logged-in user; an anonymous visitor is sent to log in and back.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::store::{self, Existing, Order, OrderLine, OrderSummary, Placed};
use super::{
    fingerprint, item_count, price_lines, total, CountryRegions, PricedLine, RawShipping, Shipping,
    ShippingErrors, COUNTRIES, MAX_ADDRESS, MAX_CITY, MAX_EMAIL, MAX_NAME, MAX_PHONE, MAX_POSTCODE,
    REGIONS,
};
use crate::cart::{CartOwner, Cleared};
use crate::catalog::Money;
use crate::domain::SubmissionId;
use crate::error::{AppError, Result};
use crate::redis::StoreError;
use crate::session::{Flash, ShopSession};
use crate::state::AppState;
use crate::telemetry::metrics;
use crate::token;
use crate::web::form::FormData;
use crate::web::notes::WriteNotes;
use crate::web::page::{Layout, LoggedIn};

/// The routes of this feature, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/checkout", get(checkout_page).post(place_order))
        .route("/orders", get(orders_page))
        .route("/orders/{id}", get(order_page))
}

#[derive(Template, WebTemplate)]
#[template(path = "checkout.html")]
pub struct CheckoutTemplate {
    layout: Layout,
    lines: Vec<PricedLine>,
    total: Money,
    item_count: u32,
    shipping: Shipping,
    errors: ShippingErrors,
    /// A message about the whole form (the cart changed, the cart is empty, …).
    notice: Option<String>,
    /// The one-time submission id: the order's idempotency key.
    submission: String,
    /// The cart this page shows ([`super::fingerprint`]).
    cart: String,
    /// The shopper's latest order when the page was first shown: with the user,
    /// the cart's key ([`store::cart_key`]), the same for every page of one cart.
    last_order: i64,
    countries: &'static [(&'static str, &'static str)],
    /// Country code, what its region is called, and its regions.
    regions: &'static [CountryRegions],
    max_name: usize,
    max_email: usize,
    max_phone: usize,
    max_address: usize,
    max_city: usize,
    max_postcode: usize,
}

impl CheckoutTemplate {
    fn new(
        layout: Layout,
        lines: Vec<PricedLine>,
        shipping: Shipping,
        (submission, last_order): (String, i64),
    ) -> Self {
        CheckoutTemplate {
            layout,
            last_order,
            total: total(&lines),
            item_count: item_count(&lines),
            cart: fingerprint(&lines),
            lines,
            shipping,
            errors: ShippingErrors::default(),
            notice: None,
            submission,
            countries: COUNTRIES,
            regions: REGIONS,
            max_name: MAX_NAME,
            max_email: MAX_EMAIL,
            max_phone: MAX_PHONE,
            max_address: MAX_ADDRESS,
            max_city: MAX_CITY,
            max_postcode: MAX_POSTCODE,
        }
    }

    fn is_selected(&self, code: &&str) -> bool {
        self.shipping.country == *code
    }

    fn is_region(&self, code: &&str) -> bool {
        self.shipping.region.eq_ignore_ascii_case(code)
    }
}

/// GET /checkout: the cart, the shipping form (filled in from the last order), and
/// a fresh submission id. Rendering writes nothing.
pub async fn checkout_page(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
) -> Result<Response> {
    let lines = price_lines(&state.catalog, &page.cart);
    let shipping = store::latest_shipping(&state.db, user.id)
        .await?
        .unwrap_or_default();
    let last_order = store::last_order_id(&state.db, user.id).await?;
    let form = (page.submission, last_order);
    Ok(CheckoutTemplate::new(page.layout, lines, shipping, form).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    address2: Option<String>,
    city: Option<String>,
    region: Option<String>,
    postcode: Option<String>,
    country: Option<String>,
    /// The one-time submission id the page was rendered with.
    submission: Option<String>,
    /// The cart the page showed.
    cart: Option<String>,
    /// The shopper's latest order when the page was shown.
    last_order: Option<String>,
}

/// POST /checkout: one order per submission id, whatever happens to the requests.
///
/// 1. The submission id already names an order → go to it (and empty the cart if
///    it still holds what was ordered: the first attempt may have died before).
///    The cart (another checkout page of it) already has an order → "this cart
///    was already ordered", nothing written.
/// 2. Check the fields, the cart, and that the cart is the one the page showed;
///    anything wrong → the form again with messages, nothing written.
/// 3. Write the order (prices from the catalog now). A concurrent attempt with the
///    same id, or from the same cart, loses on a UNIQUE index → step 1's answers.
/// 4. Empty the cart if it still holds exactly the ordered lines.
pub async fn place_order(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
    notes: WriteNotes,
    FormData(form): FormData<CheckoutForm>,
) -> Result<Response> {
    let session = page.session.clone();
    let lines = price_lines(&state.catalog, &page.cart);
    let typed = Shipping {
        name: keep_typed(form.name.as_deref(), MAX_NAME),
        email: keep_typed(form.email.as_deref(), MAX_EMAIL),
        phone: keep_typed(form.phone.as_deref(), MAX_PHONE),
        address: keep_typed(form.address.as_deref(), MAX_ADDRESS),
        address2: keep_typed(form.address2.as_deref(), MAX_ADDRESS),
        city: keep_typed(form.city.as_deref(), MAX_CITY),
        region: keep_typed(form.region.as_deref(), 6),
        postcode: keep_typed(form.postcode.as_deref(), MAX_POSTCODE),
        country: keep_typed(form.country.as_deref(), 2),
    };

    // A form without a usable id, or without the cart's, cannot be made
    // exactly-once: show it again with them.
    let submission =
        SubmissionId::parse_or_none(form.submission.as_deref()).map(SubmissionId::into_string);
    let last_order = form
        .last_order
        .as_deref()
        .and_then(|n| n.parse::<i64>().ok());
    let (Some(submission), Some(last_order)) = (submission, last_order) else {
        let fresh = (
            token::random(),
            store::last_order_id(&state.db, user.id).await?,
        );
        let mut again = CheckoutTemplate::new(page.layout, lines, typed, fresh);
        again.notice = Some(
            "This checkout form could not be confirmed. Please check your order and place it again."
                .to_owned(),
        );
        return Ok((StatusCode::BAD_REQUEST, again).into_response());
    };

    let answer = OrderAnswer {
        state: &state,
        session: &session,
        notes: &notes,
        user_id: user.id,
        submission: &submission,
    };

    let cart_key = store::cart_key(user.id, last_order);
    let keys = store::OrderKeys {
        idempotency_key: &submission,
        cart_key: &cart_key,
    };

    // 1. Already placed (a double click, a retry after a lost answer), or this
    // cart ordered from another of its checkout pages?
    let placed_before = 'placed: {
        match store::existing(&state.db, keys).await? {
            Some(Existing::ThisForm(order)) => break 'placed order,
            Some(Existing::ThisCart(order)) => {
                return answer
                    .cart_already_ordered(page.layout, lines, typed, &order)
                    .await
            }
            None => {}
        }

        // 2. Everything checked before anything is written.
        let raw = RawShipping {
            name: form.name.as_deref(),
            email: form.email.as_deref(),
            phone: form.phone.as_deref(),
            address: form.address.as_deref(),
            address2: form.address2.as_deref(),
            city: form.city.as_deref(),
            region: form.region.as_deref(),
            postcode: form.postcode.as_deref(),
            country: form.country.as_deref(),
        };
        let parsed = Shipping::parse(&raw);
        let shown_cart = form.cart.as_deref().unwrap_or_default();
        let notice = if lines.is_empty() {
            Some((
                StatusCode::BAD_REQUEST,
                "Your cart is empty: there is nothing to order.",
            ))
        } else if shown_cart != fingerprint(&lines) {
            Some((
                StatusCode::CONFLICT,
                "Your cart changed after this checkout page was shown (in another tab or on \
                 another device). Nothing was ordered. Here is your cart now: please check it \
                 and place the order again.",
            ))
        } else {
            None
        };
        let shipping = match (parsed, notice) {
            (Ok(shipping), None) => shipping,
            (parsed, notice) => {
                let form = (submission, last_order);
                let mut again = CheckoutTemplate::new(page.layout, lines, typed, form);
                let mut status = StatusCode::BAD_REQUEST;
                if let Some((notice_status, text)) = notice {
                    status = notice_status;
                    again.notice = Some(text.to_owned());
                }
                if let Err(errors) = parsed {
                    again.errors = *errors;
                }
                return Ok((status, again).into_response());
            }
        };

        // 3. Write it, once.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let order_id = match store::place(&state.db, user.id, keys, &shipping, &lines, now).await? {
            Placed::New(id) => id,
            // Another attempt with this id committed first: its order is the answer.
            // Or another page of this cart did: this one orders nothing.
            Placed::AlreadyExists => match store::existing(&state.db, keys).await? {
                Some(Existing::ThisForm(order)) => break 'placed order,
                Some(Existing::ThisCart(order)) => {
                    return answer
                        .cart_already_ordered(page.layout, lines, typed, &order)
                        .await
                }
                None => {
                    return Err(AppError::Internal(anyhow::anyhow!(
                        "order key conflict without an order"
                    )))
                }
            },
        };
        tracing::info!(
            order_id,
            user_id = user.id,
            total_cents = total(&lines).0,
            "order placed"
        );
        metrics::order_placed();

        // 4. Empty the cart, unless it changed since it was read; go to the order.
        let thanks = Flash::success(format!("Thank you! Your order #{order_id} is placed."));
        return Ok(answer.go_to(order_id, &page.cart, thanks).await);
    };

    // The order existed already (this form was sent before): it is the answer, if
    // it is this user's.
    if placed_before.user_id != user.id {
        // Someone else's id (it cannot happen by chance: 128 random bits).
        let fresh = (
            token::random(),
            store::last_order_id(&state.db, user.id).await?,
        );
        let mut again = CheckoutTemplate::new(page.layout, lines, typed, fresh);
        again.notice = Some(
            "This checkout form could not be confirmed. Please check your order and place it again."
                .to_owned(),
        );
        return Ok((StatusCode::BAD_REQUEST, again).into_response());
    }
    // Emptying the cart again finishes the job of a try that died after its commit.
    let ordered: Vec<(i64, u32)> = store::lines(&state.db, placed_before.id)
        .await?
        .iter()
        .map(|line| (line.product_id, u32::try_from(line.quantity).unwrap_or(0)))
        .collect();
    metrics::replay_caught("checkout");
    let already = Flash::info(format!(
        "Already placed: this is your order #{}.",
        placed_before.id
    ));
    Ok(answer.go_to(placed_before.id, &ordered, already).await)
}

/// The answer once this form's order exists, placed now or before: from here on
/// nothing can turn it into a failure. The write is marked applied, so whatever
/// fails next (Redis stalls while the cart is emptied, the session cannot be
/// saved) still sends the shopper to the order (`site_answers`).
struct OrderAnswer<'a> {
    state: &'a AppState,
    session: &'a ShopSession,
    notes: &'a WriteNotes,
    user_id: i64,
    submission: &'a str,
}

impl OrderAnswer<'_> {
    /// The 409 page for a checkout page of a cart that another page of it ordered
    /// (two tabs): nothing more was ordered, and the order is named. The form is
    /// shown again, fresh, with the cart as it is now, for a shopper who does
    /// want a second order.
    async fn cart_already_ordered(
        &self,
        layout: Layout,
        lines: Vec<PricedLine>,
        typed: Shipping,
        order: &Order,
    ) -> Result<Response> {
        if order.user_id != self.user_id {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a cart key names another user's order"
            )));
        }
        let last_order = store::last_order_id(&self.state.db, self.user_id).await?;
        let mut again = CheckoutTemplate::new(layout, lines, typed, (token::random(), last_order));
        again.notice = Some(format!(
            "This cart was already ordered from another checkout page: it is order #{} (see \
             Orders). Nothing more was ordered.",
            order.id
        ));
        tracing::info!(
            order_id = order.id,
            submission = self.submission,
            "cart already ordered"
        );
        Ok((StatusCode::CONFLICT, again).into_response())
    }

    /// Marks the order applied, empties the cart if it still holds `ordered` (once
    /// per order), says `message` and what became of the cart, and goes to the order.
    async fn go_to(&self, order_id: i64, ordered: &[(i64, u32)], message: Flash) -> Response {
        let order_page = format!("/orders/{order_id}");
        self.notes.applied(&order_page);
        let cleared = self
            .state
            .carts
            .clear_for_order(&CartOwner::User(self.user_id), self.submission, ordered)
            .await;
        for flash in std::iter::once(message).chain(cart_note(cleared)) {
            if let Err(err) = self.session.push_flash(flash).await {
                tracing::warn!(order_id, error = %err, "order placed, message not kept");
                break;
            }
        }
        Redirect::to(&order_page).into_response()
    }
}

/// What the shopper is told about their cart after an order, if anything.
fn cart_note(cleared: std::result::Result<Cleared, StoreError>) -> Option<Flash> {
    match cleared {
        Ok(Cleared::Emptied | Cleared::AlreadyDone) => None,
        Ok(Cleared::Kept) => Some(Flash::info(
            "Your cart changed while the order was being placed, so it was kept as it is now.",
        )),
        Err(err) => {
            tracing::warn!(error = %err, "order placed, cart not emptied");
            Some(Flash::info(
                "Your cart could not be emptied just now, so it still holds what you \
                 ordered: there is no need to order it again.",
            ))
        }
    }
}

/// What the shopper typed, kept for the form shown again (bounded, so a huge value
/// is not echoed back whole).
fn keep_typed(raw: Option<&str>, max: usize) -> String {
    raw.unwrap_or_default().chars().take(max + 20).collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "orders.html")]
pub struct OrdersTemplate {
    layout: Layout,
    orders: Vec<OrderSummary>,
}

/// GET /orders: the user's orders, newest first.
pub async fn orders_page(
    State(state): State<AppState>,
    LoggedIn { page, user }: LoggedIn,
) -> Result<Response> {
    let orders = store::list_for_user(&state.db, user.id).await?;
    Ok(OrdersTemplate {
        layout: page.layout,
        orders,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "order.html")]
pub struct OrderTemplate {
    layout: Layout,
    order: Order,
    lines: Vec<OrderLine>,
}

/// GET /orders/{id}: one order of this user. Another user's order and an unknown
/// id are the same 404: the answer does not tell which ids exist.
pub async fn order_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    LoggedIn { page, user }: LoggedIn,
) -> Result<Response> {
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let order = store::find_for_user(&state.db, user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let lines = store::lines(&state.db, order.id).await?;
    Ok(OrderTemplate {
        layout: page.layout,
        order,
        lines,
    }
    .into_response())
}
