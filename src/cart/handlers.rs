//! Cart pages and forms. Every change is a POST that ends in a redirect to `/cart`
//! (post/redirect/get), with a flash message saying what happened.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::Redirect;
use serde::Deserialize;

use super::{product_from_form, Quantity, Updated, MAX_QUANTITY};
use crate::catalog::{Money, Product};
use crate::error::{AppError, Result};
use crate::session::{Flash, ShopSession};
use crate::state::AppState;
use crate::web::{form::FormData, page::Chrome, page::Page};

pub struct CartLine {
    pub product: Product,
    pub quantity: u32,
    pub total: Money,
}

#[derive(Template, WebTemplate)]
#[template(path = "cart.html")]
pub struct CartTemplate {
    chrome: Chrome,
    lines: Vec<CartLine>,
    total: Money,
    max_quantity: u32,
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
        chrome: page.chrome,
        lines,
        total,
        max_quantity: MAX_QUANTITY,
    }
}

#[derive(Debug, Deserialize)]
pub struct LineForm {
    product_id: Option<String>,
    quantity: Option<String>,
}

pub async fn add_to_cart(
    State(state): State<AppState>,
    session: ShopSession,
    FormData(form): FormData<LineForm>,
) -> Result<Redirect> {
    // Check everything before touching anything: bad input changes nothing.
    let product = product_from_form(&state.catalog, form.product_id.as_deref())?;
    let quantity = Quantity::to_add(form.quantity.as_deref())?;

    let owner = session.cart_owner_or_new(&state.replica).await?;
    let added = state
        .carts
        .add(&owner, product.id, quantity.get())
        .await
        .map_err(AppError::Unavailable)?;
    let flash = if added.capped {
        Flash::info(format!(
            "A cart line holds at most {MAX_QUANTITY}: you now have {} × {} in your cart.",
            added.quantity, product.name
        ))
    } else {
        Flash::success(format!(
            "Added {} × {} to your cart.",
            quantity.get(),
            product.name
        ))
    };
    session.push_flash(flash).await?;
    Ok(Redirect::to("/cart"))
}

pub async fn update_cart(
    State(state): State<AppState>,
    session: ShopSession,
    FormData(form): FormData<LineForm>,
) -> Result<Redirect> {
    let product = product_from_form(&state.catalog, form.product_id.as_deref())?;
    let quantity = Quantity::to_set(form.quantity.as_deref())?;

    // No cart at all: nothing to update, and no session to create for it.
    let Some(owner) = session.cart_owner().await? else {
        return Ok(Redirect::to("/cart"));
    };
    let flash = match state
        .carts
        .update(&owner, product.id, quantity.get())
        .await
        .map_err(AppError::Unavailable)?
    {
        Updated::Set => Flash::success(format!("{} now: {}.", product.name, quantity.get())),
        Updated::Removed => Flash::success(format!("Removed {} from your cart.", product.name)),
        Updated::NotInCart => Flash::info(format!("{} was no longer in your cart.", product.name)),
    };
    session.push_flash(flash).await?;
    Ok(Redirect::to("/cart"))
}
