//! What a session record holds: the short keys of its fields, and the facts of a
//! login as the sessions page reads them back.

use serde_json::Value;
use tower_sessions::session::Record;

/// Keys inside the session record. Short on purpose: every logged-in session in
/// Redis carries them, and a million sessions multiply each byte.
pub(crate) mod key {
    pub const USER_ID: &str = "uid";
    pub const USER_NAME: &str = "name";
    pub const REMEMBER: &str = "rm";
    pub const LOGIN_AT: &str = "at";
    pub const SEEN_AT: &str = "seen";
    pub const CART_ID: &str = "cart";
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

/// One session of a user as the sessions page shows it, read from its record.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub user_id: Option<i64>,
    pub epoch: i64,
    pub handle: String,
    pub agent: String,
    pub client: String,
    pub login_at: i64,
    pub seen_at: i64,
    pub replica: String,
    pub remember: bool,
    pub submission: Option<String>,
}

impl SessionFacts {
    pub fn from_record(record: &Record) -> Self {
        let data = &record.data;
        let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let number = |k: &str| data.get(k).and_then(Value::as_i64).unwrap_or(0);
        SessionFacts {
            user_id: data.get(key::USER_ID).and_then(Value::as_i64),
            epoch: number(key::EPOCH),
            handle: text(key::HANDLE),
            agent: text(key::AGENT),
            client: text(key::CLIENT),
            login_at: number(key::LOGIN_AT),
            seen_at: number(key::SEEN_AT),
            replica: text(key::CREATED_BY),
            remember: data
                .get(key::REMEMBER)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            submission: data
                .get(key::SUBMISSION)
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}
