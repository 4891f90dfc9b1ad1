//! What every page shows around its content: who is logged in, the cart badge, the
//! flash messages and the replica that served it. Gathered once per request by the
//! [`Page`] extractor, so handlers only deal with their own content.

use std::sync::Arc;

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::cart::CartOwner;
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

/// Extractor for page handlers: the session, the cart's owner and the layout data.
///
/// Costs for a logged-in visitor: one `GET` of the session and one `HVALS` of the
/// cart. For an anonymous visitor without a cookie: nothing at all.
pub struct Page {
    pub session: ShopSession,
    pub cart_owner: Option<CartOwner>,
    pub chrome: Chrome,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = ShopSession::from_request_parts(parts, state).await?;
        let user = session.user().await?;
        let cart_owner = session.cart_owner().await?;
        let cart_count = match &cart_owner {
            Some(owner) => state
                .carts
                .item_count(owner)
                .await
                .map_err(AppError::Unavailable)?,
            None => 0,
        };
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
            cart_owner,
            chrome,
        })
    }
}
