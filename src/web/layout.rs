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
    /// Put before the page's own title when something happened to the visitor
    /// ("Signed out"), so it is heard first and seen in the tab.
    pub title_note: Option<&'static str>,
    /// Where the header's "Log in" comes back to: this page, as a safe local path
    /// (already percent-encoded for a query string).
    pub log_in_next: String,
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
            title_note: None,
            log_in_next: String::new(),
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

    /// The header's "Log in" link: back to this page afterwards, when there is one
    /// to come back to.
    pub fn log_in_href(&self) -> String {
        if self.log_in_next.is_empty() {
            "/login".to_owned()
        } else {
            format!("/login?next={}", self.log_in_next)
        }
    }

    /// The header's "Register" link, coming back to this page the same way.
    pub fn register_href(&self) -> String {
        if self.log_in_next.is_empty() {
            "/register".to_owned()
        } else {
            format!("/register?next={}", self.log_in_next)
        }
    }
}
