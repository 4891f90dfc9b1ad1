//! The layout's data: what every page shows around its content
//! (`templates/base.html`).

use std::sync::Arc;

use crate::session::{Flash, SessionUser};

/// The layout's data (`templates/base.html`).
#[derive(Debug, Clone)]
pub struct Layout {
    pub user: Option<SessionUser>,
    pub cart_count: u32,
    pub flashes: Vec<Flash>,
    pub replica: Arc<str>,
    /// False on error pages drawn without knowing the visitor.
    pub show_account: bool,
    /// Redis is unreachable: the visitor's cart and account are not shown.
    pub degraded: bool,
}

impl Layout {
    /// The layout for pages drawn without the session.
    pub fn bare(replica: Arc<str>) -> Self {
        Layout {
            user: None,
            cart_count: 0,
            flashes: Vec::new(),
            replica,
            show_account: false,
            degraded: false,
        }
    }

    /// The layout while Redis is unreachable: links to log in and to the cart stay
    /// (they lead to pages that say what is going on), the visitor's details do not.
    pub fn degraded(replica: Arc<str>) -> Self {
        Layout {
            show_account: true,
            degraded: true,
            ..Layout::bare(replica)
        }
    }
}
