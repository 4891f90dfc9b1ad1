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
mod store;

use std::sync::Arc;

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

/// Longest accepted value of each shipping field, in characters.
pub const MAX_NAME: usize = 100;
pub const MAX_ADDRESS: usize = 200;
pub const MAX_CITY: usize = 100;
pub const MAX_POSTCODE: usize = 12;

/// Countries the demo ships to: ISO 3166-1 alpha-2 code and name.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("BE", "Belgium"),
    ("CA", "Canada"),
    ("CH", "Switzerland"),
    ("DE", "Germany"),
    ("DK", "Denmark"),
    ("ES", "Spain"),
    ("FI", "Finland"),
    ("FR", "France"),
    ("GB", "United Kingdom"),
    ("IE", "Ireland"),
    ("IT", "Italy"),
    ("JP", "Japan"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NZ", "New Zealand"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("SE", "Sweden"),
    ("US", "United States"),
];

pub fn country_name(code: &str) -> &str {
    COUNTRIES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
        .unwrap_or(code)
}

/// Where to send an order, each field checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shipping {
    pub name: String,
    pub address: String,
    pub city: String,
    pub postcode: String,
    /// ISO 3166-1 alpha-2, one of [`COUNTRIES`].
    pub country: String,
}

/// One message per wrong field (`None`: the field is fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShippingErrors {
    pub name: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
}

impl ShippingErrors {
    pub fn is_empty(&self) -> bool {
        self.messages().is_empty()
    }

    pub fn messages(&self) -> Vec<&str> {
        [
            &self.name,
            &self.address,
            &self.city,
            &self.postcode,
            &self.country,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }
}

/// The raw fields of a checkout form, as strings (possibly missing).
#[derive(Debug, Clone, Default)]
pub struct RawShipping<'a> {
    pub name: Option<&'a str>,
    pub address: Option<&'a str>,
    pub city: Option<&'a str>,
    pub postcode: Option<&'a str>,
    pub country: Option<&'a str>,
}

impl Shipping {
    /// Checks every field, collecting one message per wrong field.
    pub fn parse(raw: &RawShipping<'_>) -> Result<Shipping, ShippingErrors> {
        let mut errors = ShippingErrors::default();
        let name = text_field(raw.name, "your name", MAX_NAME, &mut errors.name);
        let address = text_field(
            raw.address,
            "the street address",
            MAX_ADDRESS,
            &mut errors.address,
        );
        let city = text_field(raw.city, "the town or city", MAX_CITY, &mut errors.city);
        let mut postcode = text_field(
            raw.postcode,
            "the postcode",
            MAX_POSTCODE,
            &mut errors.postcode,
        );
        if errors.postcode.is_none()
            && !postcode
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
        {
            errors.postcode =
                Some("Postcodes may use only letters, digits, spaces and hyphens.".into());
        }
        postcode = postcode.to_ascii_uppercase();
        let country = raw
            .country
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_uppercase();
        if country.is_empty() {
            errors.country = Some("Please choose a country.".into());
        } else if !COUNTRIES.iter().any(|(code, _)| *code == country) {
            errors.country = Some(
                "Please choose a country from the list (we ship to the countries listed only)."
                    .into(),
            );
        }
        if errors.is_empty() {
            Ok(Shipping {
                name,
                address,
                city,
                postcode,
                country,
            })
        } else {
            Err(errors)
        }
    }
}

/// A free-text field: present, not blank, not too long, no control characters,
/// and no character that stood for bytes that were not UTF-8. Inner runs of white
/// space become one space.
fn text_field(raw: Option<&str>, what: &str, max: usize, error: &mut Option<String>) -> String {
    let value = raw.unwrap_or_default();
    // A form decoder turns bytes that are not UTF-8 into U+FFFD.
    if value.contains('\u{FFFD}') {
        *error = Some(format!(
            "Please re-type {what}: it contained characters that could not be read."
        ));
        return String::new();
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        *error = Some(format!(
            "Please re-type {what}: it contained control characters."
        ));
        return String::new();
    }
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_empty() {
        *error = Some(format!("Please enter {what}."));
    } else if value.chars().count() > max {
        *error = Some(format!(
            "Please shorten {what} to {max} characters at most."
        ));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(name: &'a str, country: &'a str) -> RawShipping<'a> {
        RawShipping {
            name: Some(name),
            address: Some("1 Tea Street"),
            city: Some("Leeds"),
            postcode: Some("ls1 4ab"),
            country: Some(country),
        }
    }

    #[test]
    fn shipping_fields_are_checked_one_message_each() {
        let ok = Shipping::parse(&raw("  Ada   Lovelace ", "gb")).unwrap();
        assert_eq!(ok.name, "Ada Lovelace");
        assert_eq!(ok.postcode, "LS1 4AB");
        assert_eq!(ok.country, "GB");

        let errors = Shipping::parse(&raw("", "XX")).unwrap_err();
        assert!(errors.name.is_some());
        assert!(errors.country.is_some());
        assert!(errors.address.is_none());
        assert_eq!(errors.messages().len(), 2);

        let long = "x".repeat(MAX_NAME + 1);
        assert!(Shipping::parse(&raw(&long, "GB"))
            .unwrap_err()
            .name
            .is_some());
        assert!(Shipping::parse(&raw("A\u{FFFD}a", "GB"))
            .unwrap_err()
            .name
            .is_some());
        assert!(Shipping::parse(&raw("A\u{0}a", "GB"))
            .unwrap_err()
            .name
            .is_some());
        assert!(
            Shipping::parse(&RawShipping::default())
                .unwrap_err()
                .messages()
                .len()
                == 5
        );
    }
}
