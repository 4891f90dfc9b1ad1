//! What a session record holds: the short keys of its fields, and the one struct
//! for what a login stores.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_sessions::session::Record;
use tower_sessions::Session;

/// Keys inside the session record. Short on purpose: every logged-in session in
/// Redis carries them, and a million sessions multiply each byte.
pub(crate) mod key {
    pub const USER_ID: &str = "uid";
    pub const USER_NAME: &str = "name";
    pub const REMEMBER: &str = "rm";
    pub const LOGIN_AT: &str = "at";
    pub const SEEN_AT: &str = "seen";
    pub const CART_ID: &str = "cart";
    /// Only in the record a cookie-less add created, until the visitor comes back
    /// with its cookie: the session and its cart live `ANON_TRIAL_TTL`
    /// (`session::trial`). A record without it (every older one) is a full visitor.
    pub const TRIAL: &str = "try";
    pub const FLASH: &str = "flash";
    pub const CREATED_BY: &str = "by";
    /// Only in a tombstone: this session was ended (logout, or replaced at login).
    pub const ENDED: &str = "ended";
    /// The user's credential epoch when this login started (`session::index`).
    pub const EPOCH: &str = "ep";
    /// The opaque handle that names this session on the sessions page and in the
    /// logout form (never the session id).
    pub const HANDLE: &str = "h";
    /// Browser and OS, from the User-Agent at login.
    pub const AGENT: &str = "ua";
    /// The client address at login.
    pub const CLIENT: &str = "ip";
    /// The login form's one-time submission id.
    pub const SUBMISSION: &str = "sub";
    /// The last account form (password change) applied in this session.
    pub const APPLIED: &str = "done";
}

/// What a login stores in its session: one struct for the fields a login writes
/// ([`Login::write_to`]) and the sessions page reads back ([`Login::from_record`]),
/// under the record's short keys (the serde names are the [`key`] constants; a
/// unit test holds them together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    #[serde(rename = "uid")]
    pub user_id: i64,
    #[serde(rename = "name", default)]
    pub name: String,
    /// "Remember me": a persistent cookie and the longer lifetimes.
    #[serde(rename = "rm", default)]
    pub remember: bool,
    /// Unix seconds.
    #[serde(rename = "at", default)]
    pub login_at: i64,
    /// Unix seconds of the last slide of the idle deadline.
    #[serde(rename = "seen", default)]
    pub seen_at: i64,
    /// The replica that created the session.
    #[serde(rename = "by", default)]
    pub replica: String,
    #[serde(rename = "ep", default)]
    pub epoch: i64,
    #[serde(rename = "h", default)]
    pub handle: String,
    #[serde(rename = "ua", default)]
    pub agent: String,
    #[serde(rename = "ip", default)]
    pub client: String,
    #[serde(rename = "sub", default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<String>,
}

impl Login {
    /// The record keys a login writes, in the struct's order.
    pub const KEYS: [&'static str; 11] = [
        key::USER_ID,
        key::USER_NAME,
        key::REMEMBER,
        key::LOGIN_AT,
        key::SEEN_AT,
        key::CREATED_BY,
        key::EPOCH,
        key::HANDLE,
        key::AGENT,
        key::CLIENT,
        key::SUBMISSION,
    ];

    /// The login a record holds; `None` for an anonymous visitor's record or a
    /// tombstone.
    pub fn from_record(record: &Record) -> Option<Login> {
        let fields: serde_json::Map<String, Value> = Self::KEYS
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), record.data.get(*k)?.clone())))
            .collect();
        serde_json::from_value(Value::Object(fields)).ok()
    }

    /// Writes every field into the session, one key each.
    pub async fn write_to(&self, session: &Session) -> Result<(), tower_sessions::session::Error> {
        if let Value::Object(fields) = serde_json::to_value(self)? {
            for (key, value) in fields {
                session.insert_value(&key, value).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_written_under_the_records_keys() {
        let login = Login {
            user_id: 7,
            name: "ada".into(),
            remember: true,
            login_at: 1,
            seen_at: 2,
            replica: "r".into(),
            epoch: 3,
            handle: "h".into(),
            agent: "a".into(),
            client: "c".into(),
            submission: Some("s".into()),
        };
        let Value::Object(fields) = serde_json::to_value(&login).unwrap() else {
            panic!("a map");
        };
        let written: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut expected = Login::KEYS.to_vec();
        expected.sort_unstable();
        let mut written = written;
        written.sort_unstable();
        assert_eq!(written, expected);
        let record = Record {
            id: tower_sessions::session::Id::default(),
            data: fields.into_iter().collect(),
            expiry_date: time::OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(Login::from_record(&record), Some(login));
        let anonymous = Record {
            data: [(key::CART_ID.to_owned(), Value::from("x"))].into(),
            ..record
        };
        assert_eq!(Login::from_record(&anonymous), None);
    }
}
