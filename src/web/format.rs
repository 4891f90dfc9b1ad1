//! How pages write things people read. One date format for every page.

use std::borrow::Borrow;

use time::OffsetDateTime;

/// A moment for people, to the minute: `2 December 2026, 14:05 UTC`. Takes the
/// unix seconds by value or by reference, as templates pass fields.
pub fn date(unix_seconds: impl Borrow<i64>) -> String {
    match OffsetDateTime::from_unix_timestamp(*unix_seconds.borrow()) {
        Ok(at) => format!(
            "{} {} {}, {:02}:{:02} UTC",
            at.day(),
            at.month(),
            at.year(),
            at.hour(),
            at.minute()
        ),
        Err(_) => "unknown date".to_owned(),
    }
}

/// The same, to the second, for the session inspector, where a deadline that
/// slides a few seconds is the thing to watch: `2 December 2026, 14:05:09 UTC`.
pub fn date_to_the_second(unix_seconds: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(at) => format!(
            "{} {} {}, {:02}:{:02}:{:02} UTC",
            at.day(),
            at.month(),
            at.year(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        Err(_) => "unknown date".to_owned(),
    }
}

/// A value percent-encoded for a query string (`next=%2F%3Fq%3Dtea`): every byte
/// but letters, digits, `/` and `-._~` escaped, so `&`, `=`, `#` and `%` survive.
pub fn query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_readable() {
        assert_eq!(date(0), "1 January 1970, 00:00 UTC");
        assert_eq!(date_to_the_second(61), "1 January 1970, 00:01:01 UTC");
        assert_eq!(date(i64::MAX), "unknown date");
        assert_eq!(query_value("/?q=a b&c=%"), "/%3Fq%3Da%20b%26c%3D%25");
    }
}
