//! The catalog: products from the database (SQLite or Postgres), the catalog grid
//! and the product pages.
//!
//! Products change only with a migration, so each replica reads them once at start
//! and keeps them in memory: a page view costs no database query.

pub mod pages;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::db::Db;

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
    /// Worked out once at load (see [`Catalog::new`]): the image's fingerprinted URL…
    #[sqlx(skip)]
    image_url: String,
    /// …and the lower-case text a search looks in.
    #[sqlx(skip)]
    search_text: String,
    /// Its catalog card's HTML that is the same for every visitor.
    #[sqlx(skip)]
    pub card: Card,
}

/// The parts of a product's catalog card that are the same for every visitor,
/// rendered (and escaped) once when the catalog loads: a catalog page only adds
/// what is the visitor's own (how many are in the cart, the form's one-time id,
/// the page to come back to). `templates/parts/product_card.html`.
#[derive(Debug, Default, Clone)]
pub struct Card {
    /// From the card's start to its price.
    pub head: String,
    /// The add form, up to its `submission` value.
    pub form: String,
    /// From the end of the `submission` value (`-a<id>`) to the start of the
    /// form's way back.
    pub between: String,
    /// The end of the way back (`#` and the product's slug, escaped), the button
    /// and the card's end.
    pub tail: String,
}

mod card {
    use askama::Template;

    use super::Product;

    #[derive(Template)]
    #[template(path = "parts/product_card.html", block = "head")]
    pub struct Head<'a> {
        pub product: &'a Product,
    }

    #[derive(Template)]
    #[template(path = "parts/product_card.html", block = "form")]
    pub struct Form<'a> {
        pub product: &'a Product,
    }

    #[derive(Template)]
    #[template(path = "parts/product_card.html", block = "between")]
    pub struct Between<'a> {
        pub product: &'a Product,
    }

    #[derive(Template)]
    #[template(path = "parts/product_card.html", block = "tail")]
    pub struct Tail<'a> {
        pub product: &'a Product,
    }
}

impl Card {
    fn of(product: &Product) -> Card {
        use askama::Template;
        // Rendering plain fields into a String does not fail.
        Card {
            head: card::Head { product }.render().unwrap_or_default(),
            form: card::Form { product }.render().unwrap_or_default(),
            between: card::Between { product }.render().unwrap_or_default(),
            tail: card::Tail { product }.render().unwrap_or_default(),
        }
    }
}

impl Product {
    pub fn price(&self) -> Money {
        Money(self.price_cents)
    }

    /// The image's fingerprinted URL (see `assets`).
    pub fn image_url(&self) -> &str {
        &self.image_url
    }

    pub fn category_name(&self) -> &str {
        category_name(&self.category).unwrap_or("Other")
    }

    /// True when every word of the search appears in the name, the description or
    /// the category's name (case-insensitive).
    fn matches(&self, words: &[String]) -> bool {
        words
            .iter()
            .all(|word| self.search_text.contains(word.as_str()))
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
        // Thousands separators: $1,234.50 (written from the right, no allocation).
        let mut buffer = [0u8; 32];
        let mut start = buffer.len();
        let mut rest = dollars;
        let mut digits = 0;
        loop {
            if digits > 0 && digits % 3 == 0 {
                start -= 1;
                buffer[start] = b',';
            }
            start -= 1;
            buffer[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            digits += 1;
            if rest == 0 {
                break;
            }
        }
        let grouped = std::str::from_utf8(&buffer[start..]).map_err(|_| fmt::Error)?;
        write!(f, "{sign}${grouped}.{:02}", cents % 100)
    }
}

/// All products, in catalog order, with lookups by id and slug.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Shared with the pages that show them: a page holds references, not copies.
    products: Vec<Arc<Product>>,
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
        Ok(Catalog::new(products))
    }

    /// Indexes the products, and works out what every page view would otherwise
    /// compute again: image URLs and search text.
    pub fn new(products: Vec<Product>) -> Self {
        let products: Vec<Arc<Product>> = products
            .into_iter()
            .map(|mut product| {
                product.image_url =
                    crate::assets::url(&format!("products/{}", product.image)).into_owned();
                product.search_text = format!(
                    "{} {} {}",
                    product.name,
                    product.description,
                    product.category_name()
                )
                .to_lowercase();
                product.card = Card::of(&product);
                Arc::new(product)
            })
            .collect();
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
        Catalog {
            products,
            by_id,
            by_slug,
        }
    }

    pub fn all(&self) -> &[Arc<Product>] {
        &self.products
    }

    pub fn get(&self, id: i64) -> Option<&Arc<Product>> {
        self.by_id.get(&id).map(|&i| &self.products[i])
    }

    pub fn by_slug(&self, slug: &str) -> Option<&Arc<Product>> {
        self.by_slug.get(slug).map(|&i| &self.products[i])
    }

    /// The products of a category (all when `None`) that match every word of
    /// `search`, in catalog order. In memory: twelve products need no index.
    pub fn search(&self, search: &str, category: Option<&str>) -> Vec<&Arc<Product>> {
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
            image_url: String::new(),
            search_text: String::new(),
            card: Card::default(),
        }
    }

    #[test]
    fn search_matches_every_word_in_any_case_within_a_category() {
        let catalog = Catalog::new(vec![
            product(1, "Blue Teapot", "teaware"),
            product(2, "Earl Grey Tin", "tea"),
            product(3, "Blue Tea Towel", "accessories"),
        ]);
        let ids = |found: Vec<&Arc<Product>>| found.iter().map(|p| p.id).collect::<Vec<_>>();
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
        assert_eq!(Money(100_000).to_string(), "$1,000.00");
        assert_eq!(Money(i64::MIN).to_string(), "-$92,233,720,368,547,758.08");
    }
}
