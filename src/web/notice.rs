//! The messages that need no session write: "You have logged out", "Added 2 ×
//! Blue Teapot to your cart", "Removed Blue Teapot from your cart". A logout
//! deletes the session and its cookie, so its confirmation cannot be a flash in
//! the session; and a cart change that wrote only the cart would otherwise write
//! the session as well, for its message alone (a Redis round trip on every add
//! and update, and another on the page that shows it). Each travels instead in a
//! tiny cookie of its own (`notice`), which names one of a few fixed messages
//! (never text from the request: a cart message names a product id and a
//! quantity, and the page takes the name from the catalog) and is removed by the
//! page that shows it.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};

use crate::catalog::Catalog;
use crate::domain::MAX_QUANTITY;
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
    /// An add reached the cap of a line: it now holds `quantity`.
    Capped {
        product: i64,
        quantity: u32,
    },
    /// An add form sent again: nothing was added the second time.
    AddResent {
        product: i64,
    },
    /// The line was set to `quantity`.
    Set {
        product: i64,
        quantity: u32,
    },
    Removed {
        product: i64,
    },
    /// An update for a line that had already gone.
    NotInCart {
        product: i64,
    },
    /// An update form sent again: nothing was changed the second time.
    UpdateResent {
        product: i64,
    },
}

impl Notice {
    /// How a cart notice is spelt in the cookie: a name, the product id, and for
    /// some a quantity (`added-3-2`, `removed-3`). [`Self::from_value`] reads it back.
    fn parts(self) -> Option<(&'static str, i64, Option<u32>)> {
        Some(match self {
            Notice::LoggedOut => return None,
            Notice::Added { product, quantity } => ("added", product, Some(quantity)),
            Notice::Capped { product, quantity } => ("capped", product, Some(quantity)),
            Notice::AddResent { product } => ("added_again", product, None),
            Notice::Set { product, quantity } => ("set", product, Some(quantity)),
            Notice::Removed { product } => ("removed", product, None),
            Notice::NotInCart { product } => ("gone", product, None),
            Notice::UpdateResent { product } => ("updated_again", product, None),
        })
    }

    /// Written into `out`: the cookie is made on every cart change, so without
    /// the formatter.
    fn write_value(self, out: &mut String) {
        let Some((name, product, quantity)) = self.parts() else {
            out.push_str("logged-out");
            return;
        };
        out.push_str(name);
        out.push('-');
        out.push_str(itoa::Buffer::new().format(product));
        if let Some(quantity) = quantity {
            out.push('-');
            out.push_str(itoa::Buffer::new().format(quantity));
        }
    }

    fn from_value(value: &str) -> Option<Notice> {
        if value == "logged-out" {
            return Some(Notice::LoggedOut);
        }
        let mut parts = value.split('-');
        let name = parts.next()?;
        let product: i64 = parts.next()?.parse().ok()?;
        // A line holds 1 to MAX_QUANTITY; a made-up cookie says nothing else.
        let quantity = match parts.next() {
            Some(quantity) => Some(
                quantity
                    .parse::<u32>()
                    .ok()
                    .filter(|q| (1..=MAX_QUANTITY).contains(q))?,
            ),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(match (name, quantity) {
            ("added", Some(quantity)) => Notice::Added { product, quantity },
            ("capped", Some(quantity)) => Notice::Capped { product, quantity },
            ("set", Some(quantity)) => Notice::Set { product, quantity },
            ("added_again", None) => Notice::AddResent { product },
            ("removed", None) => Notice::Removed { product },
            ("gone", None) => Notice::NotInCart { product },
            ("updated_again", None) => Notice::UpdateResent { product },
            _ => return None,
        })
    }

    /// What the page at `path` says; `None` for a product the catalog does not have.
    pub fn flash(self, catalog: &Catalog, path: &str) -> Option<Flash> {
        let name = |product: i64| catalog.get(product).map(|p| p.name.as_str());
        // An add is answered on the page it was made from: with a way to the cart.
        let after_add = |flash: Flash| {
            if path == "/cart" {
                flash
            } else {
                flash.with_link("/cart", "View cart")
            }
        };
        Some(match self {
            Notice::LoggedOut => {
                Flash::success("You have logged out. Your cart is saved for your next login.")
            }
            Notice::Added { product, quantity } => after_add(Flash::success(format!(
                "Added {quantity} × {} to your cart.",
                name(product)?
            ))),
            Notice::Capped { product, quantity } => after_add(Flash::info(format!(
                "A cart line holds at most {MAX_QUANTITY}: you now have {quantity} × {} in your \
                 cart.",
                name(product)?
            ))),
            Notice::AddResent { product } => after_add(Flash::info(format!(
                "Already added: this form was sent before, so {} was not added again.",
                name(product)?
            ))),
            Notice::Set { product, quantity } => {
                Flash::success(format!("{} now: {quantity}.", name(product)?))
            }
            Notice::Removed { product } => {
                Flash::success(format!("Removed {} from your cart.", name(product)?))
            }
            Notice::NotInCart { product } => {
                Flash::info(format!("{} was no longer in your cart.", name(product)?))
            }
            Notice::UpdateResent { product } => Flash::info(format!(
                "Already updated: this form was sent before, so {} was not changed again.",
                name(product)?
            )),
        })
    }

    /// The words the page's title starts with, if the notice changes it.
    pub fn title(self) -> Option<&'static str> {
        match self {
            Notice::LoggedOut => Some("Logged out"),
            _ => None,
        }
    }

    /// The `Set-Cookie` that carries this notice to the next page (a minute is
    /// plenty for a redirect to be followed).
    fn set_cookie(self, secure: bool) -> HeaderValue {
        cookie(|out| self.write_value(out), "60", secure)
    }

    /// A redirect to `to` that carries this notice.
    pub fn redirect(self, to: &str, secure: bool) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut redirect = axum::response::Redirect::to(to).into_response();
        redirect
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, self.set_cookie(secure));
        redirect
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
            "set-3-0",
            "capped-3-100",
            "removed-3-2",
            "removed-",
            "added-3-2-1",
            "gone-x",
            "deleted-3",
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
        for notice in [
            Notice::LoggedOut,
            Notice::Added {
                product: 3,
                quantity: 2,
            },
            Notice::Capped {
                product: 3,
                quantity: 99,
            },
            Notice::AddResent { product: 3 },
            Notice::Set {
                product: 12,
                quantity: 1,
            },
            Notice::Removed { product: 12 },
            Notice::NotInCart { product: 12 },
            Notice::UpdateResent { product: 12 },
        ] {
            let mut value = String::new();
            notice.write_value(&mut value);
            assert_eq!(Notice::from_value(&value), Some(notice), "{value}");
        }
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
