//! The messages that need no session write: "You have logged out" and "Added
//! 2 × Blue Teapot to your cart". A logout deletes the session and its cookie,
//! so its confirmation cannot be a flash in the session; and an add that wrote
//! only the cart would otherwise write the session as well, for its message
//! alone (a Redis round trip on every add, and another on the page that shows
//! it). Each travels instead in a tiny cookie of its own (`notice`), which names
//! one of a few fixed messages (never text from the request: an add names a
//! product id, and the page takes the name from the catalog) and is removed by
//! the page that shows it.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};

use crate::catalog::Catalog;
use crate::session::Flash;

/// The notice cookie's name.
pub const NOTICE_COOKIE: &str = "notice";

/// A message for the next page, carried by the `notice` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    LoggedOut,
    /// `quantity` of the product were added to the cart.
    Added {
        product: i64,
        quantity: u32,
    },
}

impl Notice {
    /// Written into `out`: the cookie is made on every add, so without the formatter.
    fn write_value(self, out: &mut String) {
        match self {
            Notice::LoggedOut => out.push_str("logged-out"),
            Notice::Added { product, quantity } => {
                out.push_str("added-");
                out.push_str(itoa::Buffer::new().format(product));
                out.push('-');
                out.push_str(itoa::Buffer::new().format(quantity));
            }
        }
    }

    fn from_value(value: &str) -> Option<Notice> {
        if value == "logged-out" {
            return Some(Notice::LoggedOut);
        }
        let (product, quantity) = value.strip_prefix("added-")?.split_once('-')?;
        let product = product.parse().ok()?;
        let quantity = quantity.parse().ok().filter(|q| (1..=99).contains(q))?;
        Some(Notice::Added { product, quantity })
    }

    /// What the page at `path` says; `None` for a product the catalog does not have.
    pub fn flash(self, catalog: &Catalog, path: &str) -> Option<Flash> {
        match self {
            Notice::LoggedOut => Some(Flash::success(
                "You have logged out. Your cart is saved for your next login.",
            )),
            Notice::Added { product, quantity } => {
                let product = catalog.get(product)?;
                let flash =
                    Flash::success(format!("Added {quantity} × {} to your cart.", product.name));
                Some(if path == "/cart" {
                    flash
                } else {
                    flash.with_link("/cart", "View cart")
                })
            }
        }
    }

    /// The words the page's title starts with, if the notice changes it.
    pub fn title(self) -> Option<&'static str> {
        match self {
            Notice::LoggedOut => Some("Logged out"),
            Notice::Added { .. } => None,
        }
    }

    /// The `Set-Cookie` that carries this notice to the next page (a minute is
    /// plenty for a redirect to be followed).
    pub fn set_cookie(self, secure: bool) -> HeaderValue {
        cookie(|out| self.write_value(out), "60", secure)
    }

    /// The notice this request carries, if any.
    pub fn carried_by(headers: &HeaderMap) -> Option<Notice> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == NOTICE_COOKIE)
            .and_then(|(_, value)| Notice::from_value(value))
    }
}

/// The `Set-Cookie` that removes the notice once a page has shown it.
pub fn removal(secure: bool) -> HeaderValue {
    cookie(|_| (), "0", secure)
}

/// `notice=<value>; Max-Age=<max_age>; Path=/; HttpOnly; SameSite=Lax[; Secure]`.
fn cookie(value: impl FnOnce(&mut String), max_age: &str, secure: bool) -> HeaderValue {
    let mut out = String::with_capacity(96);
    out.push_str(NOTICE_COOKIE);
    out.push('=');
    value(&mut out);
    out.push_str("; Max-Age=");
    out.push_str(max_age);
    out.push_str("; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        out.push_str("; Secure");
    }
    HeaderValue::try_from(out).expect("a notice cookie is plain ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_notices_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("sid=abc; notice=logged-out"),
        );
        assert_eq!(Notice::carried_by(&headers), Some(Notice::LoggedOut));
        headers.insert(COOKIE, HeaderValue::from_static("notice=<b>hi</b>"));
        assert_eq!(Notice::carried_by(&headers), None);
        headers.insert(COOKIE, HeaderValue::from_static("notice=added-3-2"));
        assert_eq!(
            Notice::carried_by(&headers),
            Some(Notice::Added {
                product: 3,
                quantity: 2
            })
        );
        for odd in [
            "added-3-0",
            "added-3-100",
            "added-x-1",
            "added-3",
            "added--1-1",
        ] {
            headers.insert(
                COOKIE,
                HeaderValue::from_str(&format!("notice={odd}")).unwrap(),
            );
            assert_eq!(Notice::carried_by(&headers), None, "{odd}");
        }
        let set = Notice::LoggedOut.set_cookie(true);
        assert_eq!(
            set.to_str().unwrap(),
            "notice=logged-out; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let added = Notice::Added {
            product: 12,
            quantity: 3,
        };
        assert_eq!(
            added.set_cookie(false).to_str().unwrap(),
            "notice=added-12-3; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            removal(false).to_str().unwrap(),
            "notice=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}
