//! The cart: where it is stored (`store`), the pages and forms (`handlers`), and
//! the checked types that a form's strings become before anything touches a cart.

pub mod pages;
mod store;

use std::sync::Arc;

pub use store::{Added, CartOwner, CartStore, EpochGuard, Guarded, Lines, Updated};

use crate::catalog::{Catalog, Product};
use crate::error::AppError;

/// Most units of one product a cart line may hold.
pub const MAX_QUANTITY: u32 = 99;

/// A line quantity from a form: a plain decimal integer in range, nothing else
/// (no sign, no exponent, no spaces inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    /// For adding: 1 to [`MAX_QUANTITY`]. A missing field means 1.
    pub fn to_add(raw: Option<&str>) -> Result<Self, AppError> {
        match raw {
            None => Ok(Quantity(1)),
            Some(raw) => Self::parse(raw, 1),
        }
    }

    /// For updating a line: 0 (remove) to [`MAX_QUANTITY`].
    pub fn to_set(raw: Option<&str>) -> Result<Self, AppError> {
        Self::parse(
            raw.ok_or_else(|| AppError::bad_request("Please enter a quantity."))?,
            0,
        )
    }

    fn parse(raw: &str, min: u32) -> Result<Self, AppError> {
        let raw = raw.trim();
        let out_of_range = || {
            AppError::bad_request(format!(
                "Quantity must be a whole number from {min} to {MAX_QUANTITY}."
            ))
        };
        if raw.is_empty() {
            return Err(AppError::bad_request("Please enter a quantity."));
        }
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(out_of_range());
        }
        // Digits only, so the only parse failure left is overflow: out of range too.
        let n: u32 = raw.parse().map_err(|_| out_of_range())?;
        if n < min || n > MAX_QUANTITY {
            return Err(out_of_range());
        }
        Ok(Quantity(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_plain_integers_in_range() {
        assert_eq!(Quantity::to_add(None).unwrap().get(), 1);
        assert_eq!(Quantity::to_add(Some(" 7 ")).unwrap().get(), 7);
        assert_eq!(Quantity::to_add(Some("99")).unwrap().get(), 99);
        for bad in [
            "abc",
            "-1",
            "0",
            "100",
            "9223372036854775808",
            "1e3",
            "",
            "+5",
            "1.5",
        ] {
            assert!(
                Quantity::to_add(Some(bad)).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(Quantity::to_set(Some("0")).unwrap().get(), 0);
        assert!(Quantity::to_set(None).is_err());
    }
}
