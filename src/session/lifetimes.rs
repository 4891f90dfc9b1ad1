//! How long each kind of session lives, in one place: the Redis key's deadline,
//! the cookie's expiry, and the sliding of an idle reader's deadline.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::{Expiry, Session};

use super::record::key;

/// How long each kind of session lives. Read by the store (the Redis key's
/// deadline) and by the cookie middleware (the cookie's Max-Age), so the two agree.
#[derive(Debug, Clone)]
pub struct Lifetimes {
    /// Logged in, "remember me" off: idle timeout, browser-session cookie.
    pub idle: Duration,
    /// Logged in, "remember me" on: idle timeout, persistent cookie.
    pub remember: Duration,
    /// Absolute lifetimes of a login, however active the user is.
    pub max: Duration,
    pub remember_max: Duration,
    /// Anonymous visitor with a cart: as long as the anonymous cart.
    pub anonymous: Duration,
    /// An anonymous visitor who has not come back since the add that created the
    /// session (`session::trial`); never longer than `anonymous` (`Config::anon_trial`).
    pub anonymous_trial: Duration,
}

/// The few facts about a session that decide its lifetime.
#[derive(Debug, Clone, Copy, Default)]
pub struct LifetimeFacts {
    pub(super) logged_in: bool,
    pub(super) remember: bool,
    pub(super) login_at: i64,
    /// Created by a cookie-less add, and not come back since.
    pub(super) trial: bool,
}

impl LifetimeFacts {
    pub(super) fn from_record(data: &HashMap<String, Value>) -> Self {
        LifetimeFacts {
            logged_in: data.contains_key(key::USER_ID),
            remember: data
                .get(key::REMEMBER)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            login_at: data.get(key::LOGIN_AT).and_then(Value::as_i64).unwrap_or(0),
            trial: data.contains_key(key::TRIAL),
        }
    }

    async fn from_session(session: &Session) -> Result<Self, tower_sessions::session::Error> {
        Ok(LifetimeFacts {
            logged_in: session.get::<i64>(key::USER_ID).await?.is_some(),
            remember: session.get::<bool>(key::REMEMBER).await?.unwrap_or(false),
            login_at: session.get::<i64>(key::LOGIN_AT).await?.unwrap_or(0),
            trial: session.get_value(key::TRIAL).await?.is_some(),
        })
    }
}

impl Lifetimes {
    /// When the server forgets this session if nothing touches it again.
    pub fn deadline(&self, facts: LifetimeFacts, now: OffsetDateTime) -> OffsetDateTime {
        if !facts.logged_in {
            return now + self.anonymous_for(facts);
        }
        let (idle, max) = if facts.remember {
            (self.remember, self.remember_max)
        } else {
            (self.idle, self.max)
        };
        let login_at = OffsetDateTime::from_unix_timestamp(facts.login_at).unwrap_or(now);
        (now + idle).min(login_at + max)
    }

    /// What the browser is told: "remember me" off gives a cookie that dies with the browser.
    pub fn cookie_expiry(&self, facts: LifetimeFacts) -> Expiry {
        match (facts.logged_in, facts.remember) {
            (true, false) => Expiry::OnSessionEnd,
            (true, true) => Expiry::OnInactivity(to_time(self.remember)),
            (false, _) => Expiry::OnInactivity(to_time(self.anonymous_for(facts))),
        }
    }

    /// An anonymous visitor's lifetime: the trial one until they come back.
    fn anonymous_for(&self, facts: LifetimeFacts) -> Duration {
        if facts.trial {
            self.anonymous_trial
        } else {
            self.anonymous
        }
    }

    /// Reading pages does not modify the session, and an unmodified session is not
    /// saved, so its deadline would not move. Instead of writing on every request
    /// (`always_save`), a reader's session is re-saved once this much time has passed.
    pub fn keep_alive_interval(&self) -> Duration {
        (self.idle / 6).min(Duration::from_secs(300))
    }
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// Slides the idle deadline of a logged-in reader, at most once per
/// [`Lifetimes::keep_alive_interval`]: a small write now and then instead of one per request.
pub async fn keep_alive(
    session: &Session,
    lifetimes: &Lifetimes,
) -> Result<(), tower_sessions::session::Error> {
    let Some(seen) = session.get::<i64>(key::SEEN_AT).await? else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let interval = lifetimes.keep_alive_interval().as_secs().max(1) as i64;
    if now - seen >= interval {
        session.insert(key::SEEN_AT, now).await?;
    }
    Ok(())
}

/// Before the layer writes a modified session, tell it which cookie to send.
pub async fn apply_cookie_expiry(
    session: &Session,
    lifetimes: &Lifetimes,
) -> Result<(), tower_sessions::session::Error> {
    if session.is_modified() {
        let facts = LifetimeFacts::from_session(session).await?;
        session.set_expiry(Some(lifetimes.cookie_expiry(facts)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            idle: Duration::from_secs(1800),
            remember: Duration::from_secs(30 * 86_400),
            max: Duration::from_secs(7 * 86_400),
            remember_max: Duration::from_secs(30 * 86_400),
            anonymous: Duration::from_secs(7 * 86_400),
            anonymous_trial: Duration::from_secs(3600),
        }
    }

    #[test]
    fn idle_deadline_is_capped_by_the_absolute_lifetime() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        let fresh = LifetimeFacts {
            logged_in: true,
            remember: false,
            login_at: now.unix_timestamp(),
            trial: false,
        };
        assert_eq!(
            lifetimes().deadline(fresh, now),
            now + Duration::from_secs(1800)
        );
        let old = LifetimeFacts {
            login_at: now.unix_timestamp() - 7 * 86_400 + 60,
            ..fresh
        };
        assert_eq!(
            lifetimes().deadline(old, now),
            now + Duration::from_secs(60)
        );
    }

    #[test]
    fn cookie_is_a_browser_session_cookie_without_remember_me() {
        let facts = LifetimeFacts {
            logged_in: true,
            remember: false,
            login_at: 0,
            trial: false,
        };
        assert_eq!(lifetimes().cookie_expiry(facts), Expiry::OnSessionEnd);
        let facts = LifetimeFacts {
            remember: true,
            ..facts
        };
        assert!(matches!(
            lifetimes().cookie_expiry(facts),
            Expiry::OnInactivity(_)
        ));
    }

    #[test]
    fn an_anonymous_visitor_on_trial_lives_the_trial_lifetime_until_it_comes_back() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        let trial = LifetimeFacts {
            trial: true,
            ..LifetimeFacts::default()
        };
        let full = LifetimeFacts::default();
        assert_eq!(
            lifetimes().deadline(trial, now),
            now + Duration::from_secs(3600)
        );
        assert_eq!(
            lifetimes().cookie_expiry(trial),
            Expiry::OnInactivity(time::Duration::hours(1))
        );
        assert_eq!(
            lifetimes().deadline(full, now),
            now + Duration::from_secs(7 * 86_400)
        );
        // (Never longer than a full visitor's: capped once, `Config::anon_trial`.)
        // A login's lifetimes win over a marker left in the record.
        let logged_in = LifetimeFacts {
            logged_in: true,
            login_at: now.unix_timestamp(),
            ..trial
        };
        assert_eq!(
            lifetimes().deadline(logged_in, now),
            now + Duration::from_secs(1800)
        );
    }

    #[test]
    fn a_record_without_the_trial_marker_is_a_full_visitor() {
        // Every record written before the marker existed: an anonymous cart, 7 days.
        let old: HashMap<String, Value> = [(key::CART_ID.to_owned(), Value::from("abc"))].into();
        let facts = LifetimeFacts::from_record(&old);
        assert!(!facts.trial && !facts.logged_in);
        let now = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        assert_eq!(
            lifetimes().deadline(facts, now),
            now + Duration::from_secs(7 * 86_400)
        );
        let mut new = old;
        new.insert(key::TRIAL.to_owned(), Value::from(true));
        assert!(LifetimeFacts::from_record(&new).trial);
    }

    #[test]
    fn keep_alive_interval_is_a_few_minutes_at_most() {
        assert_eq!(lifetimes().keep_alive_interval(), Duration::from_secs(300));
        let short = Lifetimes {
            idle: Duration::from_secs(6),
            ..lifetimes()
        };
        assert_eq!(short.keep_alive_interval(), Duration::from_secs(1));
    }
}
