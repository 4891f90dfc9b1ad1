//! A new visitor's cart on trial (`session::trial`): written with a short TTL by a
//! cookie-less add, given the full one when the visitor comes back.

use std::time::Duration;

use super::{Backend, CartStore, SUBMISSION_MEMORY};
use crate::cart::redis::END_TRIAL_SCRIPT;
use crate::cart::CartOwner;
use crate::redis::{Durability, StoreError};
use crate::telemetry::metrics::{redis_call as measured, RedisKind};

impl CartStore {
    /// A new visitor's cart lives `ttl` (`Config::anon_trial`: at most the
    /// anonymous TTL) until the visitor comes back ([`Self::on_trial`],
    /// [`Self::end_trial`]).
    pub fn with_trial(self, ttl: Duration) -> Self {
        CartStore {
            trial_ttl: ttl,
            ..self
        }
    }

    /// This store as a cookie-less visitor's first add uses it: the new cart, and
    /// the submission ids it remembers, live the trial TTL, so a client that never
    /// comes back leaves nothing longer-lived behind (`session::trial`).
    pub fn on_trial(&self) -> Self {
        CartStore {
            anonymous_ttl: self.trial_ttl,
            submission_memory: self.submission_memory.min(self.trial_ttl),
            ..self.clone()
        }
    }

    /// The visitor of anonymous cart `cart_id` came back: the cart (and its
    /// submission ids) get the full anonymous TTL. One command on the cart's slot;
    /// nothing to do in memory, where carts do not expire.
    pub async fn end_trial(&self, cart_id: &str) -> Result<(), StoreError> {
        let Backend::Redis(redis) = &self.backend else {
            return Ok(());
        };
        let owner = CartOwner::Anonymous(cart_id.to_owned());
        let keys = vec![owner.redis_key(), owner.submissions_key()];
        let args = vec![
            self.anonymous_ttl.as_secs().to_string(),
            SUBMISSION_MEMORY.as_secs().to_string(),
        ];
        let extend = async {
            let client = redis.connected(&keys[0])?;
            // Not a change the shopper waits on: no replica confirmation (`WAIT`).
            Durability::primary()
                .script::<i64, _>(&END_TRIAL_SCRIPT, &client, keys, args)
                .await
        };
        measured(RedisKind::Cart, extend).await?;
        Ok(())
    }
}
