//! Checkout and orders: the checkout page and form, the order pages, the orders
//! table, and the checked types a checkout form's strings become.
//!
//! Exactly once, in three parts (the rest of the module follows from them):
//! 1. The checkout page carries a one-time `submission` id. It is the order's
//!    idempotency key, UNIQUE in the database: a double click, a retry after a lost
//!    answer, or the same form posted to two replicas at once writes one order, and
//!    every other attempt finds that order and is sent to it.
//! 2. The page also carries the cart it showed (`cart`, see [`fingerprint`]): if the
//!    cart changed since, nothing is ordered and the new cart is shown. And the
//!    shopper's latest order when it was shown (`last_order`): every page of one
//!    cart has the same, stored with the order as its cart key, UNIQUE too, so
//!    two pages of one cart (two tabs) sent together give one order, and the
//!    other is told the cart was already ordered.
//! 3. The cart is emptied after the order is committed, only if it still holds
//!    exactly what was ordered (one atomic step in the cart store). A crash between
//!    the two loses nothing: the retry finds the order and empties the cart then.

pub mod pages;
mod regions;
mod shipping;
mod store;

use std::sync::Arc;

pub use regions::{country_name, region_name, CountryRegions, COUNTRIES, REGIONS};
pub use shipping::{
    RawShipping, Shipping, ShippingErrors, MAX_ADDRESS, MAX_CITY, MAX_EMAIL, MAX_NAME, MAX_PHONE,
    MAX_POSTCODE,
};
pub use store::{Order, OrderLine, OrderSummary};

use crate::cart::Lines;
use crate::catalog::{Catalog, Money, Product};

/// A cart line priced from the catalog, as the checkout page shows it and the
/// order stores it.
#[derive(Debug, Clone)]
pub struct PricedLine {
    pub product: Arc<Product>,
    pub quantity: u32,
}

impl PricedLine {
    pub fn total(&self) -> Money {
        Money(self.product.price_cents * i64::from(self.quantity))
    }
}

/// The cart's lines with today's catalog prices; lines naming a product the
/// catalog no longer has are left out (the cart page does the same).
pub fn price_lines(catalog: &Catalog, cart: &Lines) -> Vec<PricedLine> {
    cart.iter()
        .filter_map(|&(product_id, quantity)| {
            Some(PricedLine {
                product: catalog.get(product_id)?.clone(),
                quantity,
            })
        })
        .collect()
}

pub fn total(lines: &[PricedLine]) -> Money {
    Money(lines.iter().map(|line| line.total().0).sum())
}

pub fn item_count(lines: &[PricedLine]) -> u32 {
    lines.iter().map(|line| line.quantity).sum()
}

/// What the shopper confirmed, written into the checkout form: every line as
/// `<product id>x<quantity>@<unit price in cents>`, in product id order, joined by
/// `-` (e.g. `1x2@3400-4x3@1250`). Readable on purpose: it is the shopper's own
/// cart, and any change of a line, a quantity or a price changes it.
pub fn fingerprint(lines: &[PricedLine]) -> String {
    lines
        .iter()
        .map(|line| {
            format!(
                "{}x{}@{}",
                line.product.id, line.quantity, line.product.price_cents
            )
        })
        .collect::<Vec<_>>()
        .join("-")
}
