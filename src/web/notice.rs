//! The one message that outlives its session: "You have logged out". A logout
//! deletes the session and its cookie, so its confirmation cannot be a flash in
//! the session; it travels instead in a tiny cookie of its own (`notice`), which
//! names one of a few fixed messages (never text from the request) and is removed
//! by the page that shows it. No Redis write, no session for a logged-out visitor.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};

use crate::session::Flash;

/// The notice cookie's name.
pub const NOTICE_COOKIE: &str = "notice";

/// A message for the next page, carried by the `notice` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    LoggedOut,
}

impl Notice {
    fn value(self) -> &'static str {
        match self {
            Notice::LoggedOut => "logged-out",
        }
    }

    fn from_value(value: &str) -> Option<Notice> {
        match value {
            "logged-out" => Some(Notice::LoggedOut),
            _ => None,
        }
    }

    /// What the page says.
    pub fn flash(self) -> Flash {
        match self {
            Notice::LoggedOut => {
                Flash::success("You have logged out. Your cart is saved for your next login.")
            }
        }
    }

    /// The words the page's title starts with.
    pub fn title(self) -> &'static str {
        match self {
            Notice::LoggedOut => "Logged out",
        }
    }

    /// The `Set-Cookie` that carries this notice to the next page (a minute is
    /// plenty for a redirect to be followed).
    pub fn set_cookie(self, secure: bool) -> HeaderValue {
        cookie(self.value(), 60, secure)
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
    cookie("", 0, secure)
}

fn cookie(value: &str, max_age: u32, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{NOTICE_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("a notice cookie is plain ASCII")
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
        let set = Notice::LoggedOut.set_cookie(true);
        assert_eq!(
            set.to_str().unwrap(),
            "notice=logged-out; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
