//! W3C trace context: the `traceparent` header names the trace a request belongs
//! to, so one click can be followed from nginx to the replica that served it, and
//! into a tracing backend. nginx forwards a well-formed one and starts one when a
//! request comes without (its own 32-hex `$request_id` as the trace id); a replica
//! reached directly starts one itself. The replica logs the trace id on every
//! line of the request ([`super::middleware::RequestSpan`]) and the session
//! inspector shows it.

use std::fmt;

use axum::http::HeaderMap;

/// A trace id: 32 lower-case hex digits, not all zeros. Kept inline (no
/// allocation), as a request extension.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

impl TraceId {
    /// The trace id of a well-formed `traceparent`: `VV-<trace id>-<parent id>-FF`,
    /// all lower-case hex, version not `ff`, neither id all zeros. A later version
    /// may add fields after these four; version 00 may not.
    pub fn from_traceparent(value: &[u8]) -> Option<TraceId> {
        let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let not_zero = |s: &[u8]| s.iter().any(|b| *b != b'0');
        if value.len() < 55 {
            return None;
        }
        let (version, trace, parent, flags) =
            (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
        let dashes = value[2] == b'-' && value[35] == b'-' && value[52] == b'-';
        let rest_ok = match version {
            b"00" => value.len() == 55,
            _ => value.len() == 55 || value[55] == b'-',
        };
        let ok = dashes
            && rest_ok
            && version != b"ff"
            && [version, trace, parent, flags].into_iter().all(hex)
            && not_zero(trace)
            && not_zero(parent);
        ok.then(|| TraceId(trace.try_into().expect("32 bytes")))
    }

    /// A request id that is itself a valid trace id (32 lower-case hex digits,
    /// as nginx's `$request_id` and this replica's own request ids are).
    fn from_request_id(value: &[u8]) -> Option<TraceId> {
        let ok = value.len() == 32
            && value.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && value.iter().any(|b| *b != b'0');
        ok.then(|| TraceId(value.try_into().expect("32 bytes")))
    }

    /// The request's trace: its `traceparent`'s, else a new one (the request id
    /// when that is a valid trace id, else 128 fresh random bits).
    pub fn of(headers: &HeaderMap) -> TraceId {
        headers
            .get("traceparent")
            .and_then(|v| TraceId::from_traceparent(v.as_bytes()))
            .or_else(|| {
                headers
                    .get("x-request-id")
                    .and_then(|v| TraceId::from_request_id(v.as_bytes()))
            })
            .unwrap_or_else(|| {
                TraceId::from_request_id(crate::token::random().as_bytes())
                    .expect("random tokens are 32 hex digits")
            })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_gives_its_trace_id() {
        let id = TraceId::from_traceparent(GOOD.as_bytes()).unwrap();
        assert_eq!(id.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // A later version may carry more fields.
        let later = format!("01{}-extra", &GOOD[2..]);
        assert!(TraceId::from_traceparent(later.as_bytes()).is_some());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        let bad = [
            "",
            &GOOD[..54],
            &format!("{GOOD}-extra"),
            &GOOD.replace("4bf9", "4BF9"),
            &format!("ff{}", &GOOD[2..]),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            &format!("{}\n", &GOOD[..54]),
        ];
        for value in bad {
            assert!(
                TraceId::from_traceparent(value.as_bytes()).is_none(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn without_a_traceparent_the_request_id_or_a_fresh_id_is_the_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-request-id",
            "0123456789abcdef0123456789abcdef".parse().unwrap(),
        );
        assert_eq!(
            TraceId::of(&headers).as_str(),
            "0123456789abcdef0123456789abcdef"
        );
        headers.insert("x-request-id", "test-123".parse().unwrap());
        let fresh = TraceId::of(&headers);
        assert_eq!(fresh.as_str().len(), 32);
        assert_ne!(fresh, TraceId::of(&headers));
        headers.insert("traceparent", GOOD.parse().unwrap());
        assert_eq!(
            TraceId::of(&headers).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
