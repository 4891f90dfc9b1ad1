//! Accounts: registration, login, logout, and the checked types a form's strings
//! become (`Username`, `Password`) before any query or hash sees them.

pub mod pages;
pub mod password;
pub mod queue;
pub mod register;
pub mod throttle;
pub mod users;

pub use throttle::LoginThrottle;

/// The 429 page for a throttle's answer other than "go": too many failures, or
/// other attempts still being checked. (A spent login form is the login page's.)
pub fn throttled(verdict: &throttle::LoginVerdict) -> crate::error::AppError {
    use throttle::LoginVerdict;
    match verdict {
        LoginVerdict::Busy(wait) => crate::error::AppError::TooManyRequests {
            retry_after: (*wait).max(std::time::Duration::from_secs(1)),
            message: "Other logins for this account or from your address are being checked \
                      at this moment. Please try again in a few seconds."
                .to_owned(),
        },
        LoginVerdict::Wait(wait) => too_many_logins(*wait),
        LoginVerdict::Go(_) | LoginVerdict::FormSpent => too_many_logins(std::time::Duration::ZERO),
    }
}

/// The 429 page for a throttled login (or re-authentication).
pub fn too_many_logins(wait: std::time::Duration) -> crate::error::AppError {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    crate::error::AppError::TooManyRequests {
        retry_after: wait,
        message: format!(
            "Too many failed logins. Please try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        ),
    }
}

/// 3–32 characters of `a-z 0-9 _ -`, compared case-insensitively (stored lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err("Please choose a username.");
        }
        if !(3..=32).contains(&name.len()) {
            return Err("Usernames are 3 to 32 characters long.");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err("Usernames may use only letters a–z, digits, _ and -.");
        }
        Ok(Username(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8–128 bytes, checked before any hashing (a 1 MB password must not cost 1 MB of argon2).
pub struct Password(String);

impl Password {
    pub const MAX_BYTES: usize = 128;

    /// A new password (registration, change): 8 to 128 bytes.
    pub fn parse(raw: String) -> Result<Self, &'static str> {
        Self::checkable(&raw)?;
        if raw.len() < 8 {
            return Err("Passwords are at least 8 characters long.");
        }
        Ok(Password(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    /// A password given to be checked (login, re-authentication): refused before
    /// any hashing when it is longer than any password can be.
    pub fn checkable(raw: &str) -> Result<(), &'static str> {
        if raw.len() > Self::MAX_BYTES {
            return Err("Passwords are at most 128 bytes long.");
        }
        Ok(())
    }
}

/// Where to go after login: only a path on this site. Anything that a browser could
/// read as another host (`//evil`, `/\evil`, `http://…`, or those percent-encoded)
/// falls back to `/`.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next.map(str::trim).filter(|n| !n.is_empty()) else {
        return "/".to_owned();
    };
    let allowed = |s: &str| {
        s.starts_with('/')
            && !s.starts_with("//")
            && !s.contains('\\')
            && !s.contains("://")
            && s.bytes().all(|b| b.is_ascii_graphic())
    };
    let decoded = percent_decode(next);
    if allowed(next) && allowed(&decoded) {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

/// Why a page sent the visitor to log in, from where they are to come back to.
pub(crate) fn why_log_in(next: &str) -> Option<&'static str> {
    let path = next.split(['?', '#']).next().unwrap_or_default();
    match path {
        "/checkout" => Some(
            "Please log in or create an account to check out. Your cart comes with you, \
             and you come back here to finish your order.",
        ),
        "/orders" | "/account" | "/account/sessions" | "/account/password" => {
            Some("Please log in to see that page.")
        }
        _ if path.starts_with("/orders/") => Some("Please log in to see that page."),
        _ => None,
    }
}

/// `path`, with `?next=` when there is somewhere other than home to come back to.
pub(crate) fn with_next(path: &str, next: &str) -> String {
    if next == "/" {
        path.to_owned()
    } else {
        format!("{path}?next={}", crate::web::format::query_value(next))
    }
}

/// Decodes %XX escapes repeatedly (up to a few rounds), for checking only.
fn percent_decode(s: &str) -> String {
    let mut current = s.to_owned();
    for _ in 0..3 {
        let bytes = current.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        let next = String::from_utf8_lossy(&out).into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_and_lower_cased() {
        assert_eq!(Username::parse(" Alice_01 ").unwrap().as_str(), "alice_01");
        for bad in [
            "",
            "ab",
            "émile",
            "a b c",
            &"x".repeat(33),
            &"y".repeat(10_240),
            "bob!",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_between_8_and_128_bytes() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn next_accepts_only_local_paths() {
        assert_eq!(safe_next(Some("/cart")), "/cart");
        assert_eq!(
            safe_next(Some("/products/blue-teapot?x=1")),
            "/products/blue-teapot?x=1"
        );
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "http://evil.example",
            "https://evil.example/cart",
            "evil.example",
            "/%2F%2Fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "javascript:alert(1)",
            "/\tevil",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
