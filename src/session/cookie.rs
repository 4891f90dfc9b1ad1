//! The session cookie: its name, and the one header fix the published layer needs.

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
