//! The cart: where it is stored (`store`), the pages and forms (`handlers`), and
//! the checked types that a form's strings become before anything touches a cart.

pub mod pages;
mod store;

use std::sync::Arc;

pub use store::{Added, CartOwner, CartStore, EpochGuard, Guarded, Lines, Updated};

use crate::catalog::{Catalog, Product};
pub use crate::domain::{Quantity, MAX_QUANTITY};
use crate::error::AppError;

/// A product id from a form that names a product in the catalog.
pub fn product_from_form<'c>(
    catalog: &'c Catalog,
    raw: Option<&str>,
) -> Result<&'c Arc<Product>, AppError> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty());
    let raw = raw.ok_or_else(|| AppError::bad_request("No product was chosen."))?;
    raw.parse::<i64>()
        .ok()
        .and_then(|id| catalog.get(id))
        .ok_or_else(|| AppError::bad_request("That product does not exist."))
}
