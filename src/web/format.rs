//! How pages write things people read. One way to write a moment on every page:
//! how long ago, in words ("5 minutes ago", which needs no time zone), with the
//! exact time, in UTC, on hover (`<time datetime title>`, see [`When`]).

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

/// A moment as pages show it: `<time datetime="{{ w.iso() }}" title="{{ w.exact() }}">{{ w }}</time>`,
/// which reads "5 minutes ago" (as of the page being drawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When(pub i64);

/// [`When`] for templates, which hand fields over by reference.
pub fn when(unix_seconds: impl Borrow<i64>) -> When {
    When(*unix_seconds.borrow())
}

impl When {
    /// For the `datetime` attribute: `2026-12-07T05:24:00Z`.
    pub fn iso(&self) -> String {
        match OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(at) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            ),
            Err(_) => String::new(),
        }
    }

    /// For the `title` attribute: the exact time.
    pub fn exact(&self) -> String {
        date(self.0)
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        f.write_str(&relative(self.0, now))
    }
}

/// How far `at` is from `now`, in words: "just now", "5 minutes ago", "in 2
/// hours", "yesterday"; past a week, the date ("on 2 December 2026").
pub fn relative(at: i64, now: i64) -> String {
    let seconds = now.saturating_sub(at);
    let distance = seconds.unsigned_abs();
    let (n, unit) = match distance {
        0..60 => {
            return if seconds >= 0 {
                "just now".to_owned()
            } else {
                "in less than a minute".to_owned()
            }
        }
        60..3600 => (distance / 60, "minute"),
        3600..86_400 => (distance / 3600, "hour"),
        86_400..604_800 => (distance / 86_400, "day"),
        _ => {
            return match OffsetDateTime::from_unix_timestamp(at) {
                Ok(day) => format!("on {} {} {}", day.day(), day.month(), day.year()),
                Err(_) => "at an unknown date".to_owned(),
            }
        }
    };
    let plural = if n == 1 { "" } else { "s" };
    match (seconds >= 0, unit, n) {
        (true, "day", 1) => "yesterday".to_owned(),
        (true, ..) => format!("{n} {unit}{plural} ago"),
        (false, ..) => format!("in {n} {unit}{plural}"),
    }
}

/// For the session inspector, where a deadline that slides a few seconds is the
/// thing to watch: "in 29 minutes (7 December 2026, 05:53:09 UTC)".
pub fn moment_to_the_second(unix_seconds: i64) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    format!(
        "{} ({})",
        relative(unix_seconds, now),
        date_to_the_second(unix_seconds)
    )
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
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            encoded.push('%');
            encoded.push(HEX[usize::from(byte >> 4)] as char);
            encoded.push(HEX[usize::from(byte & 0xF)] as char);
        }
    }
    encoded
}

/// Text escaped for HTML as the templates escape it (askama's own escaper), for a
/// value written once and repeated on a page with `|safe`.
pub fn html_escaped(text: &str) -> String {
    use askama::filters::Escaper as _;
    let mut escaped = String::with_capacity(text.len());
    // Writing into a String does not fail.
    let _ = askama::filters::Html.write_escaped_str(&mut escaped, text);
    escaped
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
        assert_eq!(
            html_escaped(r#"/?q=<b>"x"&'y'"#),
            "/?q=&#60;b&#62;&#34;x&#34;&#38;&#39;y&#39;"
        );
        assert_eq!(When(61).iso(), "1970-01-01T00:01:01Z");
        let now = 1_800_000_000;
        assert_eq!(relative(now - 5, now), "just now");
        assert_eq!(relative(now - 60, now), "1 minute ago");
        assert_eq!(relative(now - 7200, now), "2 hours ago");
        assert_eq!(relative(now - 86_400, now), "yesterday");
        assert_eq!(relative(now - 3 * 86_400, now), "3 days ago");
        assert_eq!(relative(now + 1800, now), "in 30 minutes");
        assert_eq!(relative(0, now), "on 1 January 1970");
    }
}
