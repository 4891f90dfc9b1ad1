//! The catalog: products from the database (SQLite or Postgres), the catalog grid
//! and the product pages.
//!
//! Products change only with a migration, so each replica reads them once at start
//! and keeps them in memory: a page view costs no database query.

mod handlers;

use std::collections::HashMap;
use std::fmt;

use axum::{routing::get, Router};

use crate::db::Db;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(handlers::catalog_page))
        .route("/products/{slug}", get(handlers::product_page))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Product {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub image: String,
    /// A slug of [`CATEGORIES`].
    pub category: String,
}

impl Product {
    pub fn price(&self) -> Money {
        Money(self.price_cents)
    }

    /// The image's fingerprinted URL (see `assets`).
    pub fn image_url(&self) -> String {
        crate::assets::url(&format!("products/{}", self.image))
    }

    pub fn category_name(&self) -> &str {
        category_name(&self.category).unwrap_or("Other")
    }

    /// True when every word of the search appears in the name, the description or
    /// the category's name (case-insensitive).
    fn matches(&self, words: &[String]) -> bool {
        let text = format!(
            "{} {} {}",
            self.name,
            self.description,
            self.category_name()
        )
        .to_lowercase();
        words.iter().all(|word| text.contains(word.as_str()))
    }
}

/// The catalog's categories: slug (in the database and the URL) and name.
pub const CATEGORIES: &[(&str, &str)] = &[
    ("teaware", "Teaware"),
    ("tea", "Tea & pantry"),
    ("accessories", "Accessories"),
];

pub fn category_name(slug: &str) -> Option<&'static str> {
    CATEGORIES
        .iter()
        .find(|(s, _)| *s == slug)
        .map(|(_, name)| *name)
}

/// Longest search accepted, in characters; longer ones are cut.
pub const MAX_SEARCH: usize = 100;

/// An amount in integer cents, shown as dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub i64);

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let cents = self.0.unsigned_abs();
        let dollars = cents / 100;
        // Thousands separators: $1,234.50
        let digits = dollars.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        write!(f, "{sign}${grouped}.{:02}", cents % 100)
    }
}

/// All products, in catalog order, with lookups by id and slug.
#[derive(Debug, Default)]
pub struct Catalog {
    products: Vec<Product>,
    by_id: HashMap<i64, usize>,
    by_slug: HashMap<String, usize>,
}

impl Catalog {
    pub async fn load(db: &Db) -> sqlx::Result<Self> {
        let products: Vec<Product> = sqlx::query_as(
            "SELECT id, slug, name, description, price_cents, image, category FROM products ORDER BY id",
        )
        .fetch_all(db)
        .await?;
        let by_id = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        let by_slug = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.slug.clone(), i))
            .collect();
        Ok(Catalog {
            products,
            by_id,
            by_slug,
        })
    }

    pub fn all(&self) -> &[Product] {
        &self.products
    }

    pub fn get(&self, id: i64) -> Option<&Product> {
        self.by_id.get(&id).map(|&i| &self.products[i])
    }

    pub fn by_slug(&self, slug: &str) -> Option<&Product> {
        self.by_slug.get(slug).map(|&i| &self.products[i])
    }

    /// The products of a category (all when `None`) that match every word of
    /// `search`, in catalog order. In memory: twelve products need no index.
    pub fn search(&self, search: &str, category: Option<&str>) -> Vec<&Product> {
        let words: Vec<String> = search.split_whitespace().map(str::to_lowercase).collect();
        self.products
            .iter()
            .filter(|p| category.is_none_or(|c| p.category == c))
            .filter(|p| p.matches(&words))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: i64, name: &str, category: &str) -> Product {
        Product {
            id,
            slug: name.to_lowercase().replace(' ', "-"),
            name: name.into(),
            description: format!("A fine {name}."),
            price_cents: 100,
            image: String::new(),
            category: category.into(),
        }
    }

    #[test]
    fn search_matches_every_word_in_any_case_within_a_category() {
        let catalog = Catalog {
            products: vec![
                product(1, "Blue Teapot", "teaware"),
                product(2, "Earl Grey Tin", "tea"),
                product(3, "Blue Tea Towel", "accessories"),
            ],
            ..Catalog::default()
        };
        let ids = |found: Vec<&Product>| found.iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(catalog.search("", None)), vec![1, 2, 3]);
        assert_eq!(ids(catalog.search("  BLUE ", None)), vec![1, 3]);
        assert_eq!(ids(catalog.search("blue tea", None)), vec![1, 3]);
        assert_eq!(ids(catalog.search("blue", Some("teaware"))), vec![1]);
        assert_eq!(ids(catalog.search("", Some("tea"))), vec![2]);
        assert_eq!(ids(catalog.search("accessories", None)), vec![3]);
        assert!(catalog.search("kettle", None).is_empty());
    }

    #[test]
    fn money_shows_dollars_and_cents() {
        assert_eq!(Money(0).to_string(), "$0.00");
        assert_eq!(Money(450).to_string(), "$4.50");
        assert_eq!(Money(123_456_789).to_string(), "$1,234,567.89");
        assert_eq!(Money(-5).to_string(), "-$0.05");
    }
}
