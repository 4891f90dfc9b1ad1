//! The session cookie: its name, the one header fix the published layer needs,
//! and the rule that a response never sends back a cookie of a session that ended
//! meanwhile.

use super::store::SessionStore;

/// The cookie's name: short, and says nothing about the framework behind it.
pub const COOKIE_NAME: &str = "sid";

/// The cookie's name over HTTPS (`COOKIE_SECURE=true`): the `__Host-` prefix makes
/// browsers refuse it unless it is `Secure`, has `Path=/` and no `Domain`, so no
/// sibling subdomain and no plain-HTTP page can plant or overwrite it.
pub const SECURE_COOKIE_NAME: &str = "__Host-sid";

pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}

/// tower-sessions builds the cookie that removes `sid` at logout from the request's
/// cookie, without `Secure`; browsers ignore a `__Host-` cookie without it, so the
/// logout would leave the (dead) cookie behind. This adds `Secure` to that header.
pub async fn secure_cookie_removal(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header::SET_COOKIE, HeaderValue};
    let mut response = next.run(request).await;
    let prefix = format!("{SECURE_COOKIE_NAME}=");
    let fixed: Vec<HeaderValue> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| match value.to_str() {
            Ok(text)
                if text.starts_with(&prefix)
                    && !text
                        .split(';')
                        .any(|a| a.trim().eq_ignore_ascii_case("secure")) =>
            {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| value.clone())
            }
            _ => value.clone(),
        })
        .collect();
    if !fixed.is_empty() {
        response.headers_mut().remove(SET_COOKIE);
        for value in fixed {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// Cookies only move forward. A request that read its session before a logout or
/// a login in another tab ended it (an add racing the login) must not send that
/// session's cookie back after the login's new one: the browser would keep the
/// ended session and look logged out. The store refuses the save of an ended
/// session and says so ([`SessionStore::ended_meanwhile`]); this drops the
/// `Set-Cookie` the session layer still adds for it.
pub async fn keep_cookies_forward(
    axum::extract::State(store): axum::extract::State<SessionStore>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::SET_COOKIE;
    let mut response = next.run(request).await;
    if !response.headers().contains_key(SET_COOKIE) {
        return response;
    }
    let ended = |value: &axum::http::HeaderValue| {
        let Ok(text) = value.to_str() else {
            return false;
        };
        let Some((name, rest)) = text.split_once('=') else {
            return false;
        };
        let id = rest.split(';').next().unwrap_or_default();
        (name == COOKIE_NAME || name == SECURE_COOKIE_NAME) && store.ended_meanwhile(id)
    };
    let cookies: Vec<_> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    // Asked once per cookie: the store forgets an id once it has been asked.
    let kept: Vec<_> = cookies.iter().filter(|c| !ended(c)).cloned().collect();
    if kept.len() < cookies.len() {
        let headers = response.headers_mut();
        headers.remove(SET_COOKIE);
        for cookie in kept {
            headers.append(SET_COOKIE, cookie);
        }
    }
    response
}
