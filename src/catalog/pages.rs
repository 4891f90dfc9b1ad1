//! The catalog grid and the product pages: read-only, open to everyone.

use axum::routing::get;
use axum::Router;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{category_name, Product, CATEGORIES, MAX_SEARCH};
use crate::domain::MAX_QUANTITY;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::page::{Layout, Page};

/// The routes of this feature, merged into the app's router (`router::build`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(catalog_page))
        .route("/products/{slug}", get(product_page))
}

#[derive(Template)]
#[template(path = "catalog.html")]
pub struct CatalogTemplate {
    layout: Layout,
    products: Vec<Arc<Product>>,
    /// The search as typed (trimmed, bounded); empty when there is none.
    q: String,
    /// The chosen category's name, if any.
    category_name: Option<&'static str>,
    /// The chosen category's slug (kept by the search form), empty for all.
    category: &'static str,
    /// "All" and one link per category, each keeping the search, rendered
    /// (`FilterNav`).
    filters: Cow<'static, str>,
    /// The same category without the search; the same search in every category.
    clear_search: Cow<'static, str>,
    search_everywhere: Cow<'static, str>,
    /// Said when the URL named a category that does not exist.
    notice: Option<String>,
    /// The page's one-time submission id (each add form adds its product id).
    submission: String,
    /// This page's address, for the add forms to come back to (to the card's
    /// anchor: an add from far down the page does not jump back to the top);
    /// HTML-escaped here once, as every card repeats it.
    back_html: String,
    /// The visitor's cart lines, to say on each card how many are in the cart.
    cart: crate::cart::Lines,
}

/// Room for the whole catalog's page (~12 KB) from the start: askama's own size
/// hint cannot count the cards rendered beforehand, and a buffer grown by doubling
/// copied the page over several times per view.
const CATALOG_PAGE_CAPACITY: usize = 16 * 1024;

impl IntoResponse for CatalogTemplate {
    fn into_response(self) -> Response {
        let mut page = String::with_capacity(CATALOG_PAGE_CAPACITY);
        match self.render_into(&mut page) {
            Ok(()) => Html(page).into_response(),
            Err(err) => {
                AppError::Internal(anyhow::anyhow!("rendering the catalog: {err}")).into_response()
            }
        }
    }
}

impl CatalogTemplate {
    fn is_filtered(&self) -> bool {
        !self.q.is_empty() || self.category_name.is_some()
    }

    /// How many of this product the visitor's cart holds.
    fn in_cart(&self, product_id: &i64) -> u32 {
        self.cart
            .iter()
            .find(|(id, _)| id == product_id)
            .map_or(0, |(_, quantity)| *quantity)
    }
}

pub struct FilterLink {
    name: &'static str,
    href: Cow<'static, str>,
    current: bool,
}

/// The category links, as they sit in the catalog's `<ul>`.
#[derive(Template)]
#[template(path = "parts/category_filter.html")]
struct FilterNav {
    filters: Vec<FilterLink>,
}

impl FilterNav {
    /// "All" and one link per category, `current` marked; `link` makes each href.
    fn render(current: Option<&str>, link: impl Fn(Option<&str>) -> Cow<'static, str>) -> String {
        let mut filters = vec![FilterLink {
            name: "All",
            href: link(None),
            current: current.is_none(),
        }];
        filters.extend(CATEGORIES.iter().map(|(slug, name)| FilterLink {
            name,
            href: link(Some(slug)),
            current: current == Some(*slug),
        }));
        FilterNav { filters }
            .render()
            .expect("rendering a list of links into a String cannot fail")
    }

    /// Without a search, the links are the same on every page of a category:
    /// rendered once per process, one for "All" and one per category.
    fn without_search(current: Option<&str>) -> Cow<'static, str> {
        static NAVS: LazyLock<Vec<(Option<&str>, String)>> = LazyLock::new(|| {
            let link = |slug: Option<&str>| match slug {
                None => Cow::Borrowed("/"),
                Some(slug) => category_link(slug),
            };
            std::iter::once(None)
                .chain(CATEGORIES.iter().map(|(slug, _)| Some(*slug)))
                .map(|current| (current, FilterNav::render(current, link)))
                .collect()
        });
        NAVS.iter()
            .find(|(known, _)| *known == current)
            .map_or(Cow::Borrowed(""), |(_, nav)| Cow::Borrowed(nav.as_str()))
    }
}

#[derive(Debug, Deserialize)]
pub struct CatalogQuery {
    q: Option<String>,
    category: Option<String>,
}

/// GET /?q=…&category=…: the catalog, filtered by category and searched by words.
/// A query string the decoder cannot read is ignored like an empty one.
pub async fn catalog_page(
    State(state): State<AppState>,
    query: Result<Query<CatalogQuery>, QueryRejection>,
    page: Page,
) -> CatalogTemplate {
    let (raw_q, raw_category) = query.map(|Query(q)| (q.q, q.category)).unwrap_or_default();
    let q: String = raw_q
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SEARCH)
        .collect();
    let raw_category = raw_category.unwrap_or_default();
    let raw_category = raw_category.trim();
    let category = CATEGORIES
        .iter()
        .map(|(slug, _)| *slug)
        .find(|slug| *slug == raw_category);
    let notice = (!raw_category.is_empty() && category.is_none())
        .then(|| "There is no such category: showing every category.".to_owned());

    let products = state
        .catalog
        .search(&q, category)
        .into_iter()
        .cloned()
        .collect();
    // Written out only when there is something to keep: most views are of the
    // whole catalog, and their links are all plain "/".
    // Percent-encoded for the links (the template escapes HTML on top).
    let escaped_q = crate::web::format::query_value(&q);
    let link = |slug: Option<&str>| -> Cow<'static, str> {
        match (slug, q.is_empty()) {
            (None, true) => Cow::Borrowed("/"),
            (Some(slug), true) => category_link(slug),
            (None, false) => Cow::Owned(format!("/?q={escaped_q}")),
            (Some(slug), false) => Cow::Owned(format!("/?category={slug}&q={escaped_q}")),
        }
    };
    let filters = if q.is_empty() {
        FilterNav::without_search(category)
    } else {
        Cow::Owned(FilterNav::render(category, link))
    };
    let clear_search = match category {
        Some(slug) => category_link(slug),
        None => Cow::Borrowed("/"),
    };
    let search_everywhere = link(None);
    // An add from search results comes back to the same results.
    let back = link(category);
    CatalogTemplate {
        layout: page.layout,
        products,
        clear_search,
        search_everywhere,
        q,
        category_name: category.and_then(category_name),
        category: category.unwrap_or_default(),
        filters,
        notice,
        submission: page.submission,
        back_html: crate::web::format::html_escaped(&back),
        cart: page.cart,
    }
}

/// `/?category=<slug>`, made once per category rather than on every page (the
/// filter links of every catalog page without a search).
fn category_link(slug: &str) -> Cow<'static, str> {
    static LINKS: LazyLock<Vec<(&str, String)>> = LazyLock::new(|| {
        CATEGORIES
            .iter()
            .map(|(slug, _)| (*slug, format!("/?category={slug}")))
            .collect()
    });
    match LINKS.iter().find(|(known, _)| *known == slug) {
        Some((_, link)) => Cow::Borrowed(link),
        None => Cow::Owned(format!("/?category={slug}")),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "product.html")]
pub struct ProductTemplate {
    layout: Layout,
    product: Arc<Product>,
    max_quantity: u32,
    submission: String,
}

pub async fn product_page(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    page: Page,
) -> Result<ProductTemplate> {
    let product = state
        .catalog
        .by_slug(&slug)
        .ok_or(AppError::NotFound)?
        .clone();
    Ok(ProductTemplate {
        layout: page.layout,
        product,
        max_quantity: MAX_QUANTITY,
        submission: page.submission,
    })
}
