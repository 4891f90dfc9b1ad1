//! The catalog grid and the product pages: read-only, open to everyone.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};

use super::{Catalog, Product};
use crate::cart::MAX_QUANTITY;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::web::page::{Chrome, Page};

#[derive(Template, WebTemplate)]
#[template(path = "catalog.html")]
pub struct CatalogTemplate {
    chrome: Chrome,
    catalog: Arc<Catalog>,
    submission: String,
}

pub async fn catalog_page(State(state): State<AppState>, page: Page) -> CatalogTemplate {
    CatalogTemplate {
        chrome: page.chrome,
        catalog: state.catalog,
        submission: page.submission,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "product.html")]
pub struct ProductTemplate {
    chrome: Chrome,
    product: Product,
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
        chrome: page.chrome,
        product,
        max_quantity: MAX_QUANTITY,
        submission: page.submission,
    })
}
