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
}

impl Product {
    pub fn price(&self) -> Money {
        Money(self.price_cents)
    }
}

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
            "SELECT id, slug, name, description, price_cents, image FROM products ORDER BY id",
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
}

#[cfg(test)]
mod tests {
    use super::Money;

    #[test]
    fn money_shows_dollars_and_cents() {
        assert_eq!(Money(0).to_string(), "$0.00");
        assert_eq!(Money(450).to_string(), "$4.50");
        assert_eq!(Money(123_456_789).to_string(), "$1,234,567.89");
        assert_eq!(Money(-5).to_string(), "-$0.05");
    }
}
