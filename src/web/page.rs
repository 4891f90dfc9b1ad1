//! What every page shows around its content: who is logged in, the cart badge, the
//! flash messages and the replica that served it. Gathered once per request by the
//! [`Page`] extractor, so handlers only deal with their own content.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::cart::Lines;
use crate::error::AppError;
use crate::session::{Flash, SessionUser, ShopSession};
use crate::state::AppState;

/// The layout's data (`templates/base.html`).
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: Option<SessionUser>,
    pub cart_count: u32,
    pub flashes: Vec<Flash>,
    pub replica: Arc<str>,
    /// False on error pages, which are drawn without looking at the session.
    pub show_account: bool,
}

impl Chrome {
    /// The layout for pages drawn without the session (error pages).
    pub fn bare(replica: Arc<str>) -> Self {
        Chrome {
            user: None,
            cart_count: 0,
            flashes: Vec::new(),
            replica,
            show_account: false,
        }
    }
}

/// Extractor for page handlers: the session, the visitor's cart and the layout data.
///
/// Costs for a logged-in visitor: one `GET` of the session and one `HGETALL` of
/// the cart (the badge counts it; the cart page lists it). For an anonymous
/// visitor without a cookie: nothing at all.
pub struct Page {
    pub session: ShopSession,
    /// The cart's lines, in product id order; empty for a visitor with no cart.
    pub cart: Lines,
    pub chrome: Chrome,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = ShopSession::from_request_parts(parts, state).await?;
        // Reads the cart and checks the user's credential epoch in one command (accounts).
        let cart = crate::account::page_cart(state, &session).await?;
        let user = session.user().await?;
        let cart_count = cart.iter().map(|(_, quantity)| quantity).sum();
        let flashes = session.take_flashes().await?;
        let chrome = Chrome {
            user,
            cart_count,
            flashes,
            replica: state.replica.clone(),
            show_account: true,
        };
        Ok(Page {
            session,
            cart,
            chrome,
        })
    }
}
